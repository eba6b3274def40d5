/** Unit tests of the status bar text and the validation of `mmx/status`. */
import { strict as assert } from "node:assert";
import { describe, it } from "node:test";
import { formatUsd, parseStatus, statusText, statusTooltip } from "../../src/core/status";

const example = {
  request_id: "r1",
  kind: "inline",
  tier: "cheap",
  model: "gpt-5-mini",
  reason: "single-expression completion, 180 context tokens",
  cached: false,
  escalated: false,
  latency_ms: 412,
  input_tokens: 930,
  output_tokens: 41,
  cost_usd: 0.00031,
  saved_usd: 0.0042,
  session_cost_usd: 0.42,
  budget_left_usd: 4.98,
};

function parsed(raw: unknown) {
  const r = parseStatus(raw);
  assert.ok(r.ok, r.ok ? "" : r.error);
  return r.value;
}

describe("formatUsd", () => {
  const cases: Array<[number, string]> = [
    [0, "$0"],
    [0.42, "$0.42"],
    [12.345, "$12.35"],
    [0.01, "$0.01"],
    [0.00031, "$0.0003"],
    [0.0042, "$0.0042"],
    [0.000028, "$0.00003"],
    [0.0000012, "$0.000001"],
    [0.0000001, "<$0.000001"],
    [-0.5, "-$0.50"],
    [Number.NaN, "$?"],
  ];
  for (const [usd, text] of cases) it(`formats ${usd} as ${text}`, () => assert.equal(formatUsd(usd), text));
});

describe("statusText", () => {
  it("shows tier, model, cost of the request and today's spend", () => {
    assert.equal(statusText(parsed(example)), "cheap · gpt-5-mini · $0.0003 | today $0.42");
  });
  it("marks a cost billed on estimated tokens with ≈", () => {
    assert.equal(statusText(parsed({ ...example, usage_estimated: true })), "cheap · gpt-5-mini · ≈$0.0003 | today $0.42");
  });
  it("marks a cached answer", () => {
    assert.equal(statusText(parsed({ ...example, cached: true, cost_usd: 0 })), "cheap · gpt-5-mini · $0 cached | today $0.42");
  });
  it("marks an escalation with an arrow", () => {
    const s = parsed({ ...example, tier: "premium", model: "gpt-5.5", escalated: true, cost_usd: 0.012 });
    assert.equal(statusText(s), "premium · gpt-5.5 ↑ · $0.01 | today $0.42");
  });
  it("shows a failed request with a warning icon", () => {
    assert.equal(statusText(parsed({ ...example, error: "provider down" })), "$(warning) cheap · gpt-5-mini · failed | today $0.42");
  });
  it("leaves out today's spend when the server did not send it", () => {
    const { session_cost_usd: _omit, ...rest } = example;
    assert.equal(statusText(parsed(rest)), "cheap · gpt-5-mini · $0.0003");
  });
});

describe("statusTooltip", () => {
  const tip = statusTooltip(parsed(example));
  it("shows the reason", () => assert.match(tip, /single\\-expression completion, 180 context tokens/));
  it("shows tokens and latency", () => {
    assert.match(tip, /930 in \/ 41 out/);
    assert.match(tip, /412 ms/);
  });
  it("shows saved and budget left", () => {
    assert.match(tip, /Saved vs premium \| \$0\\\.0042/);
    assert.match(tip, /Budget left \| \$4\\\.98/);
  });
  it("says when there is no budget", () => {
    assert.match(statusTooltip(parsed({ ...example, budget_left_usd: null })), /no budget set/);
  });
  it("lists the attempts of an escalated request", () => {
    const s = parsed({
      ...example,
      escalated: true,
      attempts: [
        { model: "gpt-5-mini", cost_usd: 0.0003, passed: false },
        { model: "gpt-5.5", cost_usd: 0.01, passed: true },
      ],
    });
    const t = statusTooltip(s);
    assert.match(t, /failed verification/);
    assert.match(t, /passed/);
  });
});

describe("parseStatus rejects malformed payloads", () => {
  const bad: Array<[string, unknown, RegExp]> = [
    ["null", null, /not a JSON object/],
    ["a string", "cheap", /not a JSON object/],
    ["an array", [example], /not a JSON object/],
    ["no tier", { ...example, tier: undefined }, /tier is missing/],
    ["a numeric model", { ...example, model: 5 }, /model is not a string/],
    ["no cost", { ...example, cost_usd: undefined }, /cost_usd is missing/],
    ["a string cost", { ...example, cost_usd: "0.1" }, /cost_usd is not a number/],
    ["an infinite cost", { ...example, cost_usd: Infinity }, /cost_usd is not a number/],
    ["string tokens", { ...example, input_tokens: "930" }, /input_tokens is not a number/],
  ];
  for (const [name, raw, err] of bad)
    it(`rejects ${name}`, () => {
      const r = parseStatus(raw);
      assert.equal(r.ok, false);
      if (!r.ok) assert.match(r.error, err);
    });
  it("accepts a minimal status", () => {
    const s = parsed({ tier: "premium", model: "m", cost_usd: 0 });
    assert.equal(s.session_cost_usd, null);
    assert.equal(statusText(s), "premium · m · $0");
  });
});
