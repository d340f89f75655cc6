import { describe, expect, it } from "vitest";
import { expectInvalid } from "../../test/helpers/expectInvalid.js";
import { checkLlamaCppExtra } from "./llamaCppExtraFields.js";

const refused = (extra: Record<string, unknown>, param: string, n = 1) => expectInvalid(() => checkLlamaCppExtra(extra, n), param);

describe("checkLlamaCppExtra", () => {
  it("accepts no extra fields", () => {
    expect(() => checkLlamaCppExtra(undefined, 1)).not.toThrow();
    expect(() => checkLlamaCppExtra({}, 1)).not.toThrow();
  });

  it("accepts what the SDKs send that does not change the answer, with any value", () => {
    const extra = {
      user: "u-1",
      metadata: { team: "a" },
      store: true,
      service_tier: "auto",
      prompt_cache_key: "k",
      safety_identifier: "s",
      prediction: { type: "content", content: "draft" },
    };
    expect(() => checkLlamaCppExtra(extra, 1)).not.toThrow();
  });

  it("accepts fields set to their neutral values", () => {
    expect(() =>
      checkLlamaCppExtra({ modalities: ["text"], logit_bias: {}, echo: false, suffix: "", best_of: 1, function_call: "none", functions: [] }, 1),
    ).not.toThrow();
    expect(() => checkLlamaCppExtra({ modalities: [] }, 1)).not.toThrow();
    // best_of equal to n asks for nothing more than n.
    expect(() => checkLlamaCppExtra({ best_of: 3 }, 3)).not.toThrow();
  });

  it("accepts any field set to null", () => {
    expect(() => checkLlamaCppExtra({ logit_bias: null, echo: null, some_engine_option: null }, 1)).not.toThrow();
  });

  it("refuses a known field with a value that would change the answer, naming it", () => {
    const cases: [string, unknown][] = [
      ["modalities", ["text", "audio"]],
      ["modalities", "text"],
      ["logit_bias", { "50256": -100 }],
      ["logit_bias", []],
      ["echo", true],
      ["suffix", " end"],
      ["function_call", "auto"],
      ["function_call", { name: "f" }],
      ["functions", [{ name: "f" }]],
    ];
    for (const [name, value] of cases) {
      const err = refused({ [name]: value }, name);
      expect(err.message).toContain(`'${name}'`);
      expect(err.message).toContain("with this value");
    }
    refused({ best_of: 3 }, "best_of", 2);
    refused({ best_of: 2 }, "best_of", 1);
  });

  it("refuses an unknown field the way OpenAI names one", () => {
    const err = refused({ user: "u", mirostat: 2 }, "mirostat");
    expect(err.message).toContain("Unrecognized request argument supplied: 'mirostat'");
  });

  it("names the first offending field when there are several", () => {
    refused({ user: "u", echo: true, foo: 1 }, "echo");
  });

  it("does not take inherited names for known fields", () => {
    for (const name of ["constructor", "toString", "hasOwnProperty", "__proto__"]) {
      const extra = JSON.parse(`{"${name}": 1}`) as Record<string, unknown>;
      const err = refused(extra, name);
      expect(err.message).toContain("Unrecognized");
    }
  });
});
