// Kata's `tcfilter` model: all traffic of a CNI interface is mirrored to and
// from a tap device beside it, with an ingress qdisc on each and a `mirred`
// redirect both ways. The veth keeps its addresses (CNI's DEL expects them);
// its own stack never sees a packet. Plans are pure; applying runs `tc`.
import { inNetns } from './netns-links.js';

/** The tap beside CNI interface number `index` (at most 15 characters, as every Linux interface name). */
export const tapName = (index: number) => `tap${index}_kt`;

/** The commands that set up the mirror between veth and tap, in order. */
export function mirrorCommands(veth: string, tap: string, mtu: number): string[][] {
  const redirect = (from: string, to: string) => ['tc', 'filter', 'add', 'dev', from, 'parent', 'ffff:', 'protocol', 'all', 'u32', 'match', 'u8', '0', '0', 'action', 'mirred', 'egress', 'redirect', 'dev', to];
  return [
    ['ip', 'link', 'set', 'dev', tap, 'mtu', String(mtu), 'up'],
    ['tc', 'qdisc', 'add', 'dev', veth, 'ingress'],
    redirect(veth, tap),
    ['tc', 'qdisc', 'add', 'dev', tap, 'ingress'],
    redirect(tap, veth),
  ];
}

/** What undoing it takes on the veth: the tap, and its qdisc, go when the last fd to it closes. */
export function unmirrorCommands(veth: string): string[][] {
  return [['tc', 'qdisc', 'del', 'dev', veth, 'ingress']];
}

export async function mirror(netnsPath: string, veth: string, tap: string, mtu: number): Promise<void> {
  for (const argv of mirrorCommands(veth, tap, mtu)) await inNetns(netnsPath, argv);
}

export async function unmirror(netnsPath: string, veth: string): Promise<void> {
  for (const argv of unmirrorCommands(veth)) await inNetns(netnsPath, argv);
}
