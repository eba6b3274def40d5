/** Pure: at most one message per kind of failure per minute (DESIGN.md), whatever sends it. */

/** The kind of a message: its text without numbers (the same failure with other counts). */
export function kindOf(message: string): string {
  return message.replace(/\d+(\.\d+)?/g, "#").slice(0, 120);
}

export class QuietMessages {
  private readonly lastShown = new Map<string, number>();

  constructor(
    private readonly everyMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** True when a message of this kind may be shown now (and counts it as shown). */
  take(message: string): boolean {
    const kind = kindOf(message);
    const t = this.now();
    const last = this.lastShown.get(kind);
    if (last !== undefined && t - last < this.everyMs) return false;
    this.lastShown.set(kind, t);
    return true;
  }
}
