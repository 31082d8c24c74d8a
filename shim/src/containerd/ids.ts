// Task and exec ids as containerd allows them; they become path components here.
const ID = /^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/;

export function isValidId(id: string): boolean {
  return ID.test(id);
}
