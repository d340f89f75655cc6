import http from "node:http";
import type { AddressInfo } from "node:net";

export interface OtlpAttribute {
  key: string;
  value: Record<string, unknown>;
}

/** A span as OTLP/HTTP JSON carries it. */
export interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: OtlpAttribute[];
  status: { code?: number; message?: string };
  startTimeUnixNano: string | number;
  endTimeUnixNano: string | number;
}

export interface OtlpExport {
  path: string;
  body: { resourceSpans: { resource: { attributes: OtlpAttribute[] }; scopeSpans: { spans: OtlpSpan[] }[] }[] };
}

export interface OtlpCollector {
  url: string;
  requests: OtlpExport[];
  /** Every span received, with its resource's service.name. */
  spans(): (OtlpSpan & { service: string })[];
  close(): Promise<void>;
}

/** A loopback OTLP/HTTP collector (JSON): what it receives, as sent. */
export async function startOtlpCollector(): Promise<OtlpCollector> {
  const requests: OtlpExport[] = [];
  const server = http.createServer((req, res) => {
    let text = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => (text += c));
    req.on("end", () => {
      requests.push({ path: req.url ?? "", body: JSON.parse(text) as OtlpExport["body"] });
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    spans: () =>
      requests.flatMap((r) =>
        r.body.resourceSpans.flatMap((rs) => {
          const service = String(rs.resource.attributes.find((a) => a.key === "service.name")?.value.stringValue ?? "");
          return rs.scopeSpans.flatMap((s) => s.spans.map((span) => ({ ...span, service })));
        }),
      ),
    close: () => new Promise((r) => server.close(() => r())),
  };
}
