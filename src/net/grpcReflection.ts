import { toBinary, type DescFile, type DescMessage, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { ServerReflection as ReflectionV1, type ServerReflectionRequest } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ReflectionV1alpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";

const NOT_FOUND = 5;
const UNIMPLEMENTED = 12;

/** The files a port's services are defined in, with every file they import, by name and by the symbols they define. */
class Descriptors {
  readonly byName = new Map<string, DescFile>();
  readonly bySymbol = new Map<string, DescFile>();

  constructor(readonly services: readonly DescService[]) {
    for (const service of services) this.addFile(service.file);
  }

  private addFile(file: DescFile): void {
    const name = file.proto.name;
    if (this.byName.has(name)) return;
    this.byName.set(name, file);
    for (const dependency of file.dependencies) this.addFile(dependency);
    const addMessage = (message: DescMessage) => {
      this.bySymbol.set(message.typeName, file);
      for (const field of message.fields) this.bySymbol.set(`${message.typeName}.${field.name}`, file);
      for (const e of message.nestedEnums) this.bySymbol.set(e.typeName, file);
      message.nestedMessages.forEach(addMessage);
    };
    file.messages.forEach(addMessage);
    for (const e of file.enums) this.bySymbol.set(e.typeName, file);
    for (const service of file.services) {
      this.bySymbol.set(service.typeName, file);
      for (const method of service.methods) this.bySymbol.set(`${service.typeName}.${method.name}`, file);
    }
  }

  /** A file and every file it imports, serialized, the file itself first. */
  withDependencies(file: DescFile): Uint8Array[] {
    const out: Uint8Array[] = [];
    const seen = new Set<string>();
    const visit = (f: DescFile) => {
      if (seen.has(f.proto.name)) return;
      seen.add(f.proto.name);
      out.push(toBinary(FileDescriptorProtoSchema, f.proto));
      f.dependencies.forEach(visit);
    };
    visit(file);
    return out;
  }
}

type Answer =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

function answer(d: Descriptors, req: ServerReflectionRequest): Answer {
  const request = req.messageRequest;
  const notFound = (what: string): Answer => ({ case: "errorResponse", value: { errorCode: NOT_FOUND, errorMessage: `${what} not found` } });
  switch (request.case) {
    case "listServices":
      return { case: "listServicesResponse", value: { service: d.services.map((s) => ({ name: s.typeName })) } };
    case "fileByFilename": {
      const file = d.byName.get(request.value);
      return file ? { case: "fileDescriptorResponse", value: { fileDescriptorProto: d.withDependencies(file) } } : notFound(`file ${request.value}`);
    }
    case "fileContainingSymbol": {
      const file = d.bySymbol.get(request.value.replace(/^\./, ""));
      return file ? { case: "fileDescriptorResponse", value: { fileDescriptorProto: d.withDependencies(file) } } : notFound(`symbol ${request.value}`);
    }
    case "fileContainingExtension":
      // SMMF's contracts define no extensions.
      return notFound(`extension ${request.value.extensionNumber} of ${request.value.containingType}`);
    case "allExtensionNumbersOfType":
      return d.bySymbol.has(request.value) ? { case: "allExtensionNumbersResponse", value: { baseTypeName: request.value, extensionNumber: [] } } : notFound(`type ${request.value}`);
    default:
      return { case: "errorResponse", value: { errorCode: UNIMPLEMENTED, errorMessage: "an empty or unknown reflection request" } };
  }
}

/**
 * gRPC server reflection (grpc.reflection.v1, and v1alpha, which older tools such as grpcurl ask for first) for
 * one port: the services it serves, and the files that define them with their imports, so that `grpcurl list`
 * and `grpcurl describe` show SMMF's API without its .proto files. One response per request, in order.
 */
export function createReflectionServices(services: () => readonly DescService[]): [ServiceImpl<typeof ReflectionV1>, ServiceImpl<typeof ReflectionV1alpha>] {
  let descriptors: Descriptors | undefined;
  const impl = {
    async *serverReflectionInfo(requests: AsyncIterable<ServerReflectionRequest>) {
      descriptors ??= new Descriptors(services());
      for await (const req of requests) yield { validHost: req.host, originalRequest: req, messageResponse: answer(descriptors, req) };
    },
  };
  return [impl, impl as unknown as ServiceImpl<typeof ReflectionV1alpha>];
}
