/** Pure: Markdown for the `mmx.stats` summary, an `mmx.explain` Decision and the tier menu. */
import { formatUsd } from "./status";

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function cell(v: unknown): string {
  if (v === null || v === undefined) return "–";
  const text = typeof v === "string" ? v : typeof v === "number" || typeof v === "boolean" ? String(v) : JSON.stringify(v);
  return text.replace(/\|/g, "\\|").replace(/\r?\n/g, " ");
}

function usd(v: unknown): string {
  return typeof v === "number" ? formatUsd(v) : "–";
}

function ms(v: unknown): string {
  return typeof v === "number" ? `${Math.round(v)} ms` : "–";
}

/** Renders the `mmx.stats` result: totals, then one row per model. */
export function statsMarkdown(stats: unknown): string {
  if (!isObj(stats)) return "# mmx stats\n\nThe server returned no statistics.";
  const totals = isObj(stats.totals) ? stats.totals : stats;
  const lines = ["# mmx stats", ""];
  lines.push("| Requests | Cost | Saved vs premium | Cache hits |", "|---:|---:|---:|---:|");
  lines.push(`| ${cell(totals.requests ?? 0)} | ${usd(totals.cost_usd)} | ${usd(totals.saved_usd)} | ${cell(totals.cache_hits ?? 0)} |`);
  const rows = Array.isArray(stats.by_model) ? stats.by_model.filter(isObj) : [];
  lines.push("", "## By model", "");
  if (rows.length === 0) {
    lines.push("No requests yet.");
  } else {
    lines.push(
      "| Model | Tier | Requests | Cache hits | Tokens in | Tokens out | Cost | p50 | p95 | Accepted | Rejected |",
      "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    );
    for (const r of rows)
      lines.push(
        `| ${cell(r.model)} | ${cell(r.tier)} | ${cell(r.requests)} | ${cell(r.cache_hits)} | ${cell(r.input_tokens)} | ` +
          `${cell(r.output_tokens)} | ${usd(r.cost_usd)} | ${ms(r.p50_ms)} | ${ms(r.p95_ms)} | ${cell(r.accepted)} | ${cell(r.rejected)} |`,
      );
  }
  return lines.join("\n") + "\n";
}

/** Renders a routing Decision (`mmx.explain`): the choice, why, and the estimates per tier. */
export function decisionMarkdown(decision: unknown): string {
  if (!isObj(decision)) return "# mmx routing\n\nThe server returned no decision.";
  const d = decision;
  const lines = ["# mmx routing", ""];
  lines.push(`**${cell(d.kind ?? "request")}** → **${cell(d.tier)}** tier, model \`${cell(d.model)}\``, "");
  if (typeof d.reason === "string" && d.reason) lines.push(`> ${cell(d.reason)}`, "");
  lines.push("| | |", "|---|---|");
  if (typeof d.score === "number") lines.push(`| Score | ${d.score.toFixed(3)} |`);
  lines.push(`| Rule | ${d.rule === null || d.rule === undefined ? "none" : cell(d.rule)} |`);
  lines.push(`| Override | ${d.override === null || d.override === undefined ? "none" : cell(d.override)} |`);
  lines.push(`| Cached | ${d.cached === true ? "yes" : "no"} |`);
  if (isObj(d.estimate_usd)) {
    lines.push("", "## Estimated cost", "", "| Tier | Estimate |", "|---|---:|");
    for (const [tier, v] of Object.entries(d.estimate_usd)) lines.push(`| ${cell(tier)} | ${usd(v)} |`);
  }
  if (isObj(d.features)) {
    lines.push("", "## Features", "", "| Feature | Value |", "|---|---:|");
    for (const [k, v] of Object.entries(d.features)) lines.push(`| ${cell(k)} | ${cell(v)} |`);
  }
  return lines.join("\n") + "\n";
}

/** One entry of the tier quick pick. */
export interface TierChoice {
  label: string;
  description?: string;
  action:
    | { kind: "setTier"; tier: "cheap" | "premium" | "auto"; scope: "next" | "document" | "session" }
    | { kind: "command"; command: string }
    | { kind: "separator" };
}

/** The tier menu; file-scoped entries only when a file is open. */
export function tierChoices(hasDocument: boolean): TierChoice[] {
  const c: TierChoice[] = [
    { label: "$(arrow-up) Premium for the next request", action: { kind: "setTier", tier: "premium", scope: "next" } },
    { label: "$(arrow-down) Cheap for the next request", action: { kind: "setTier", tier: "cheap", scope: "next" } },
  ];
  if (hasDocument)
    c.push(
      { label: "$(file) Premium for this file", action: { kind: "setTier", tier: "premium", scope: "document" } },
      { label: "$(file) Cheap for this file", action: { kind: "setTier", tier: "cheap", scope: "document" } },
      { label: "$(file) Automatic for this file", action: { kind: "setTier", tier: "auto", scope: "document" } },
    );
  c.push(
    { label: "$(clock) Premium for this session", action: { kind: "setTier", tier: "premium", scope: "session" } },
    { label: "$(clock) Cheap for this session", action: { kind: "setTier", tier: "cheap", scope: "session" } },
    {
      label: "$(sync) Automatic routing",
      description: "drop session overrides",
      action: { kind: "setTier", tier: "auto", scope: "session" },
    },
    { label: "", action: { kind: "separator" } },
    { label: "$(graph) Show stats", action: { kind: "command", command: "mmx.showStats" } },
    { label: "$(question) Explain routing here", action: { kind: "command", command: "mmx.explainRouting" } },
    { label: "$(output) Show log", action: { kind: "command", command: "mmx.showLog" } },
  );
  return c;
}
