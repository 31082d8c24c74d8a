// Task and exec ids as containerd allows them; they become path components here.
const ID = /^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/;

export function isValidId(id: string): boolean {
  return ID.test(id);
}

/**
 * A sandbox's name on this host: ids are unique only within a containerd
 * namespace, and `@` is in neither, so `<id>@<namespace>` cannot collide.
 */
export function sandboxNameOnHost(namespace: string, sandboxId: string): string {
  return `${sandboxId}@${namespace}`;
}
