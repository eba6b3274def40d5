/** Pure: the server's `mmx.health` answer (each tier's endpoint), for the status bar and a panel. */

/** One tier of `mmx.health`. */
export interface TierHealth {
  tier: string;
  model: string;
  baseUrl: string;
  api: string;
  reachable: boolean | null;
  modelListed: boolean | null;
  latencyMs: number | null;
  fim: string;
  fimDetail: string;
  problem: string | null;
}

export interface Health {
  ok: boolean;
  tiers: TierHealth[];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(v: unknown, fallback = ""): string {
  return typeof v === "string" ? v : fallback;
}

function boolOrNull(v: unknown): boolean | null {
  return typeof v === "boolean" ? v : null;
}

/** Reads an `mmx.health` answer; undefined when it is not one. */
export function parseHealth(raw: unknown): Health | undefined {
  if (!isRecord(raw) || !Array.isArray(raw.tiers)) return undefined;
  const tiers = raw.tiers.filter(isRecord).map((t) => ({
    tier: str(t.tier, "?"),
    model: str(t.model, "?"),
    baseUrl: str(t.base_url),
    api: str(t.api, "chat"),
    reachable: boolOrNull(t.reachable),
    modelListed: boolOrNull(t.model_listed),
    latencyMs: typeof t.latency_ms === "number" ? t.latency_ms : null,
    fim: str(t.fim, "n/a"),
    fimDetail: str(t.fim_detail),
    problem: typeof t.problem === "string" && t.problem !== "" ? t.problem : null,
  }));
  return { ok: tiers.every((t) => t.problem === null), tiers };
}

/** A tier that no request can succeed on: down, or not callable (no key). */
export function isDown(t: TierHealth): boolean {
  return t.problem !== null && t.reachable !== true;
}

/** One short state per tier for the status bar: `cheap ✓ · premium down`. */
export function healthText(h: Health): string {
  return h.tiers
    .map((t) => `${t.tier} ${t.problem === null ? "✓" : isDown(t) ? "down" : "⚠"}`)
    .join(" · ");
}

/** The worst state: undefined (all well), "warning" or "error" (a tier is down). */
export function healthSeverity(h: Health): "warning" | "error" | undefined {
  if (h.tiers.some(isDown)) return "error";
  return h.ok ? undefined : "warning";
}

function escapeCell(text: string): string {
  return text.replace(/\|/g, "\\|").replace(/\r?\n/g, " ");
}

/** The whole answer as Markdown: a table of the tiers, then what to fix. */
export function healthMarkdown(h: Health): string {
  const lines = ["# mmx endpoints", ""];
  lines.push(h.ok ? "Every tier's endpoint answers." : "**Some tiers need attention** (what to fix is below).", "");
  lines.push("| Tier | Model | Endpoint | Answers | Lists the model | Latency | Fill-in-the-middle |", "|---|---|---|---|---|---:|---|");
  const yesNo = (v: boolean | null): string => (v === null ? "–" : v ? "yes" : "no");
  for (const t of h.tiers)
    lines.push(
      `| ${escapeCell(t.tier)} | ${escapeCell(t.model)} | ${escapeCell(t.baseUrl)} | ${yesNo(t.reachable)} | ${yesNo(t.modelListed)} | ` +
        `${t.latencyMs === null ? "–" : `${t.latencyMs} ms`} | ${escapeCell(t.fim)} |`,
    );
  const notes = h.tiers.filter((t) => t.problem !== null || t.fimDetail !== "");
  if (notes.length > 0) {
    lines.push("", "## What to fix", "");
    for (const t of notes) {
      if (t.problem !== null) lines.push(`- **${t.tier}**: ${t.problem}`);
      if (t.fimDetail !== "") lines.push(`- ${t.tier}, fill-in-the-middle: ${t.fimDetail}`);
    }
  }
  return lines.join("\n") + "\n";
}
