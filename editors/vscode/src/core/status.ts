/** Pure: validation of the server's `mmx/status` notification and the status bar's text. */

/** One `attempts` entry: a model call made for a request. */
export interface Attempt {
  model: string;
  input_tokens?: number;
  output_tokens?: number;
  cost_usd?: number;
  passed?: boolean;
}

/** The `mmx/status` payload (DESIGN.md, "Status to the editor"). */
export interface MmxStatus {
  request_id: string;
  kind: string;
  tier: string;
  model: string;
  reason: string;
  cached: boolean;
  escalated: boolean;
  latency_ms: number | null;
  input_tokens: number | null;
  output_tokens: number | null;
  cost_usd: number;
  saved_usd: number | null;
  session_cost_usd: number | null;
  budget_left_usd: number | null;
  error: string | null;
  attempts: Attempt[];
  /** The endpoint reported no usage and nothing counted it: the cost is an estimate ("≈"). */
  usage_estimated: boolean;
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: string };

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isMoney(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v);
}

function optNumber(o: Record<string, unknown>, key: string, problems: string[]): number | null {
  const v = o[key];
  if (v === undefined || v === null) return null;
  if (!isMoney(v)) {
    problems.push(`${key} is not a number`);
    return null;
  }
  return v;
}

/**
 * Checks a `mmx/status` payload. Required: `tier` and `model` (strings) and `cost_usd`
 * (a finite number); everything else is optional and type-checked when present.
 */
export function parseStatus(raw: unknown): ParseResult<MmxStatus> {
  if (!isRecord(raw)) return { ok: false, error: "status is not a JSON object" };
  const problems: string[] = [];
  const str = (key: string, required: boolean): string => {
    const v = raw[key];
    if (typeof v === "string") return v;
    if (required || (v !== undefined && v !== null)) problems.push(`${key} is ${v === undefined ? "missing" : "not a string"}`);
    return "";
  };
  const tier = str("tier", true);
  const model = str("model", true);
  const requestId = str("request_id", false);
  const kind = str("kind", false);
  const reason = str("reason", false);
  let cost = 0;
  if (isMoney(raw.cost_usd)) cost = raw.cost_usd;
  else problems.push(`cost_usd is ${raw.cost_usd === undefined ? "missing" : "not a number"}`);
  const status: MmxStatus = {
    request_id: requestId,
    kind,
    tier,
    model,
    reason,
    cached: raw.cached === true,
    escalated: raw.escalated === true,
    latency_ms: optNumber(raw, "latency_ms", problems),
    input_tokens: optNumber(raw, "input_tokens", problems),
    output_tokens: optNumber(raw, "output_tokens", problems),
    cost_usd: cost,
    saved_usd: optNumber(raw, "saved_usd", problems),
    session_cost_usd: optNumber(raw, "session_cost_usd", problems),
    budget_left_usd: optNumber(raw, "budget_left_usd", problems),
    error: typeof raw.error === "string" && raw.error !== "" ? raw.error : null,
    usage_estimated: raw.usage_estimated === true,
    attempts: Array.isArray(raw.attempts)
      ? raw.attempts.filter(isRecord).map((a) => ({
          model: typeof a.model === "string" ? a.model : "?",
          input_tokens: isMoney(a.input_tokens) ? a.input_tokens : undefined,
          output_tokens: isMoney(a.output_tokens) ? a.output_tokens : undefined,
          cost_usd: isMoney(a.cost_usd) ? a.cost_usd : undefined,
          passed: typeof a.passed === "boolean" ? a.passed : undefined,
        }))
      : [],
  };
  if (problems.length > 0) return { ok: false, error: problems.join("; ") };
  return { ok: true, value: status };
}

/**
 * Formats US dollars for a small space: cents for a cent or more ("$0.42"); below a cent, four
 * decimals or as many as the first significant digit needs, at most six ("$0.0003",
 * "$0.00003"), so that a tiny cost never reads as zero; "<$0.000001" below that; "$0" for zero.
 */
export function formatUsd(usd: number): string {
  if (!Number.isFinite(usd)) return "$?";
  const sign = usd < 0 ? "-" : "";
  const a = Math.abs(usd);
  if (a === 0) return "$0";
  if (a >= 0.01) return `${sign}$${a.toFixed(2)}`;
  if (a < 0.0000005) return `${sign === "-" ? ">-" : "<"}$0.000001`;
  const decimals = Math.min(6, Math.max(4, -Math.floor(Math.log10(a))));
  return `${sign}$${a.toFixed(decimals)}`;
}

/** The request's cost, "≈"-marked when it was billed on estimated tokens. */
function cost(s: MmxStatus): string {
  return (s.usage_estimated ? "≈" : "") + formatUsd(s.cost_usd);
}

/** The status bar text, e.g. `cheap · gpt-5-mini · $0.0003 | today $0.42`. */
export function statusText(s: MmxStatus): string {
  const parts = [s.tier, s.escalated ? `${s.model} ↑` : s.model];
  if (s.error !== null) parts.push("failed");
  else parts.push(s.cached ? `${formatUsd(s.cost_usd)} cached` : cost(s));
  let text = parts.join(" · ");
  if (s.session_cost_usd !== null) text += ` | today ${formatUsd(s.session_cost_usd)}`;
  return s.error !== null ? `$(warning) ${text}` : text;
}

function escapeMd(text: string): string {
  return text.replace(/[\\`*_{}[\]()#+\-.!|<>]/g, (c) => `\\${c}`);
}

/** The tooltip (Markdown): reason, tokens, latency, saved and budget left. */
export function statusTooltip(s: MmxStatus): string {
  const lines: string[] = [];
  lines.push(`**mmx** — ${escapeMd(s.kind || "request")} answered by **${escapeMd(s.model)}** (${escapeMd(s.tier)} tier)`);
  lines.push("");
  if (s.error !== null) lines.push(`$(warning) Failed: ${escapeMd(s.error)}`, "");
  if (s.reason) lines.push(`Why: ${escapeMd(s.reason)}`, "");
  const rows: Array<[string, string]> = [];
  rows.push(["Cost", cost(s) + (s.cached ? " (from cache)" : s.usage_estimated ? " (estimated: the endpoint reported no usage)" : "")]);
  if (s.input_tokens !== null || s.output_tokens !== null)
    rows.push(["Tokens", `${s.input_tokens ?? "?"} in / ${s.output_tokens ?? "?"} out`]);
  if (s.latency_ms !== null) rows.push(["Latency", `${Math.round(s.latency_ms)} ms`]);
  if (s.saved_usd !== null) rows.push(["Saved vs premium", formatUsd(s.saved_usd)]);
  if (s.session_cost_usd !== null) rows.push(["Spent today", formatUsd(s.session_cost_usd)]);
  rows.push(["Budget left", s.budget_left_usd === null ? "no budget set" : formatUsd(s.budget_left_usd)]);
  if (s.escalated) rows.push(["Escalated", "yes: the cheap answer failed verification"]);
  lines.push("| | |", "|---|---|");
  for (const [k, v] of rows) lines.push(`| ${k} | ${escapeMd(v)} |`);
  if (s.attempts.length > 1) {
    lines.push("", "Attempts:");
    for (const a of s.attempts)
      lines.push(
        `- ${escapeMd(a.model)}: ${a.cost_usd === undefined ? "?" : escapeMd(formatUsd(a.cost_usd))}` +
          (a.passed === undefined ? "" : a.passed ? ", passed" : ", failed verification"),
      );
  }
  lines.push("", "Click to set the tier or open stats.");
  return lines.join("\n");
}
