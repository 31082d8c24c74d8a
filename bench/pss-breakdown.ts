// Where a QEMU process's PSS is, from /proc/PID/smaps: the guest's RAM (its
// memfd), the rootfs image mapped for DAX (shared by every sandbox, so its
// PSS is split between them), TCG's translated-code buffer, and the rest of
// QEMU (its code, heap, device state).
import { readFileSync } from 'node:fs';


export function qemuPssBreakdown(pid: number): Record<string, number> {
  const parts: Record<string, number> = { 'guest RAM': 0, 'rootfs image': 0, 'TCG buffer': 0, 'QEMU itself': 0 };
  let current = 'QEMU itself';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const header = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (header) {
      const path = header[4] ?? '';
      // TCG's buffer (tb-size) is QEMU's only anonymous executable memory, in regions of a few MiB.
      current = path.startsWith('/memfd:') ? 'guest RAM' : path.endsWith('rootfs.img') ? 'rootfs image' : path === '' && header[3]!.includes('x') ? 'TCG buffer' : 'QEMU itself';
      continue;
    }
    const pss = /^Pss:\s+(\d+) kB/.exec(line);
    if (pss) parts[current]! += Number(pss[1]) / 1024;
  }
  return parts;
}
