/**
 * Whether an engine is in use: runs of its sessions, and whole requests that callers mark busy
 * (a lens run is many session runs with host work between them). Background work, the float32
 * copies that an engine makes after it opened (engine.ts), waits for it to be quiet: no use for
 * QUIET_MS, unless it is hurried (a caller waits for that work). A worker thread sees the same
 * state through `pausedFlag`, on which it can Atomics.wait.
 */

/** How long an engine must be unused before background work goes on. */
export const QUIET_MS = 250;

export class Activity {
  private active = 0;
  private quietTimer?: NodeJS.Timeout;
  private waiters: (() => void)[] = [];
  private hurried = false;
  /** [0]: 0 while background work may go on, 1 while it waits (busy, or not quiet yet), 2 once stopped (it ends). */
  readonly pausedFlag = new Int32Array(new SharedArrayBuffer(4));

  /** Quiet only QUIET_MS after it is made: the first use of a model comes right after it opens. */
  constructor(private readonly quietMs = QUIET_MS) {
    Atomics.store(this.pausedFlag, 0, 1);
    this.quietTimer = setTimeout(() => this.quiet(), quietMs);
    this.quietTimer.unref();
  }

  /** Marks the engine busy until the returned function is called (once). */
  begin(): () => void {
    this.active++;
    if (this.quietTimer) clearTimeout(this.quietTimer);
    this.quietTimer = undefined;
    if (!this.hurried) Atomics.compareExchange(this.pausedFlag, 0, 0, 1);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      if (--this.active === 0) {
        this.quietTimer = setTimeout(() => this.quiet(), this.quietMs);
        this.quietTimer.unref();
      }
    };
  }

  /** Runs `f` with the engine marked busy. */
  async during<T>(f: () => Promise<T>): Promise<T> {
    const end = this.begin();
    try {
      return await f();
    } finally {
      end();
    }
  }

  /** Background work may go on: hurried, or no use now and none for the quiet time since the last. */
  get quietNow(): boolean {
    return this.hurried || (this.active === 0 && this.quietTimer === undefined);
  }

  /** From now on background work goes on whatever the use (someone waits for it). */
  hurry(): void {
    this.hurried = true;
    if (Atomics.compareExchange(this.pausedFlag, 0, 1, 0) === 1) Atomics.notify(this.pausedFlag, 0);
    this.wake();
  }

  get stopped(): boolean {
    return Atomics.load(this.pausedFlag, 0) === 2;
  }

  /** Resolves once the engine is quiet (at once when it is); rejects once stopped. */
  whenQuiet(): Promise<void> {
    if (this.stopped) return Promise.reject(new StoppedError());
    if (this.quietNow) return Promise.resolve();
    return new Promise<void>((resolve, reject) => this.waiters.push(() => (this.stopped ? reject(new StoppedError()) : resolve())));
  }

  /** Ends background work for good: waiters reject, and a worker sees 2. */
  stop(): void {
    if (this.quietTimer) clearTimeout(this.quietTimer);
    this.quietTimer = undefined;
    Atomics.store(this.pausedFlag, 0, 2);
    Atomics.notify(this.pausedFlag, 0);
    this.wake();
  }

  private quiet(): void {
    this.quietTimer = undefined;
    if (Atomics.compareExchange(this.pausedFlag, 0, 1, 0) === 1) Atomics.notify(this.pausedFlag, 0);
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

/** Background work ended because its engine was disposed. */
export class StoppedError extends Error {
  constructor() {
    super("the engine was disposed");
  }
}
