/** Unit tests of the stats and routing Markdown and the tier menu. */
import { strict as assert } from "node:assert";
import { describe, it } from "node:test";
import { decisionMarkdown, statsMarkdown, tierChoices } from "../../src/core/markdown";

describe("statsMarkdown", () => {
  it("shows totals and one row per model", () => {
    const md = statsMarkdown({
      totals: { requests: 3, cost_usd: 0.0125, saved_usd: 0.2, cache_hits: 1 },
      by_model: [
        { model: "stub-cheap", tier: "cheap", requests: 2, cache_hits: 1, input_tokens: 100, output_tokens: 20, cost_usd: 0.0005, p50_ms: 40.2, p95_ms: 80, accepted: 1, rejected: 0 },
        { model: "stub-premium", tier: "premium", requests: 1, cache_hits: 0, input_tokens: 50, output_tokens: 10, cost_usd: 0.012, p50_ms: 90, p95_ms: 90, accepted: 0, rejected: 1 },
      ],
    });
    assert.match(md, /\| 3 \| \$0\.01 \| \$0\.20 \| 1 \|/);
    assert.match(md, /\| stub-cheap \| cheap \| 2 \| 1 \| 100 \| 20 \| \$0\.0005 \| 40 ms \| 80 ms \| 1 \| 0 \|/);
    assert.match(md, /\| stub-premium \| premium \|/);
  });
  it("says when there are no requests", () => assert.match(statsMarkdown({ totals: {}, by_model: [] }), /No requests yet/));
  it("survives junk", () => assert.match(statsMarkdown("junk"), /no statistics/));
  it("escapes pipes in model names", () => assert.match(statsMarkdown({ by_model: [{ model: "a|b" }] }), /a\\\|b/));
});

describe("decisionMarkdown", () => {
  it("shows tier, model, reason, estimates and features", () => {
    const md = decisionMarkdown({
      request_id: "r",
      kind: "inline",
      tier: "cheap",
      model: "stub-cheap",
      score: 0.12345,
      reason: "small completion",
      features: { context_tokens: 180 },
      rule: null,
      override: null,
      estimate_usd: { cheap: 0.0001, premium: 0.002 },
      cached: false,
    });
    assert.match(md, /\*\*inline\*\* → \*\*cheap\*\* tier, model `stub-cheap`/);
    assert.match(md, /> small completion/);
    assert.match(md, /Score \| 0\.123/);
    assert.match(md, /\| premium \| \$0\.0020 \|/);
    assert.match(md, /\| context_tokens \| 180 \|/);
  });
  it("survives junk", () => assert.match(decisionMarkdown(null), /no decision/));
});

describe("tierChoices", () => {
  it("offers file scope only with an open file", () => {
    const scopes = (doc: boolean) =>
      tierChoices(doc).flatMap((c) => (c.action.kind === "setTier" ? [c.action.scope] : []));
    assert.ok(scopes(true).includes("document"));
    assert.ok(!scopes(false).includes("document"));
  });
  it("covers every tier and scope the server accepts, and opens stats", () => {
    const set = tierChoices(true).flatMap((c) => (c.action.kind === "setTier" ? [`${c.action.tier}/${c.action.scope}`] : []));
    for (const want of ["premium/next", "cheap/next", "premium/document", "auto/document", "premium/session", "auto/session"])
      assert.ok(set.includes(want), want);
    assert.ok(tierChoices(true).some((c) => c.action.kind === "command" && c.action.command === "mmx.showStats"));
  });
});
