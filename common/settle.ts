// Waiting on something for a bounded time, without leaving a timer behind.

/** Resolves true once `promise` settles (either way), or false after `ms`; the timer is cleared. */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = promise.then(
    () => true,
    () => true,
  );
  const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([settled, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/** A promise that rejects with the signal's reason when it aborts; dispose() once it no longer matters. */
export function rejectedOnAbort(signal: AbortSignal | undefined): { promise: Promise<never>; dispose: () => void } {
  let onAbort = () => {};
  const promise = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal!.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
  promise.catch(() => undefined);
  return { promise, dispose: () => signal?.removeEventListener('abort', onAbort) };
}
