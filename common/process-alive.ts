// Whether a process of this pid exists, without touching it: signal 0. One of
// another user's counts (EPERM), so does a zombie not yet reaped.
export function isProcessAlive(pid: number): boolean {
  if (!(pid > 0)) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
