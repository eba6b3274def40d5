/** Unit tests of the `mmx.health` rendering and of the quiet-message policy. */
import { strict as assert } from "node:assert";
import { describe, it } from "node:test";
import { healthMarkdown, healthSeverity, healthText, parseHealth } from "../../src/core/health";
import { kindOf, QuietMessages } from "../../src/core/quiet";

const up = {
  tier: "cheap",
  provider: "local",
  model: "qwen",
  api: "completions",
  base_url: "http://127.0.0.1:8080/v1",
  reachable: true,
  model_listed: true,
  latency_ms: 12,
  fim: "no",
  fim_detail: "the endpoint put the suffix before the prefix",
  problem: 'tier cheap: set api = "chat" for this tier',
  ok: false,
};
const down = {
  ...up,
  tier: "premium",
  api: "chat",
  base_url: "http://127.0.0.1:9/v1",
  reachable: false,
  model_listed: null,
  latency_ms: null,
  fim: "n/a",
  fim_detail: "",
  problem: "cannot reach http://127.0.0.1:9/v1 (Connection refused): start the model server",
};

describe("parseHealth", () => {
  it("reads each tier and says what to fix", () => {
    const h = parseHealth({ ok: false, tiers: [up, down] });
    assert.ok(h);
    assert.equal(h.ok, false);
    assert.equal(healthText(h), "cheap ⚠ · premium down");
    assert.equal(healthSeverity(h), "error");
    const md = healthMarkdown(h);
    assert.match(md, /\| premium \| qwen \| http:\/\/127\.0\.0\.1:9\/v1 \| no \|/);
    assert.match(md, /start the model server/);
    assert.match(md, /suffix before the prefix/);
  });

  it("is all well when no tier has a problem", () => {
    const ok = { ...up, fim: "unknown", fim_detail: "", problem: null, ok: true };
    const h = parseHealth({ ok: true, tiers: [ok, { ...ok, tier: "premium" }] });
    assert.ok(h);
    assert.equal(healthText(h), "cheap ✓ · premium ✓");
    assert.equal(healthSeverity(h), undefined);
  });

  it("rejects what is not an answer", () => {
    assert.equal(parseHealth(undefined), undefined);
    assert.equal(parseHealth({ tiers: "no" }), undefined);
  });
});

describe("QuietMessages", () => {
  it("shows one kind of failure at most once a minute", () => {
    let now = 0;
    const quiet = new QuietMessages(60_000, () => now);
    assert.equal(quiet.take("cheap tier: HTTP 500 (next try in 30 s)"), true);
    now = 5_000;
    assert.equal(quiet.take("cheap tier: HTTP 500 (next try in 25 s)"), false, "same kind, other numbers");
    assert.equal(quiet.take("premium tier: HTTP 500"), true, "another kind");
    now = 61_000;
    assert.equal(quiet.take("cheap tier: HTTP 500 (next try in 30 s)"), true, "a minute later");
  });

  it("names a kind without its numbers", () => {
    assert.equal(kindOf("retry 3 in 0.5 s"), "retry # in # s");
  });
});
