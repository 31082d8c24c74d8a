// The parts of a sandbox's VM that are drawn at random for each one; kept out
// of vm-plan.ts so that the plan stays a pure function of its input.
import { randomBytes, randomInt } from 'node:crypto';

/** A vsock context id for a new guest (0-2 are reserved). */
export const randomGuestCid = () => randomInt(3, 0x7fffffff);

/** A locally administered unicast MAC, for a NIC whose CNI interface is not known yet. */
export function localMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfc) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}
