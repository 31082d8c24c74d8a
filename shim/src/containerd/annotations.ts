// What the CRI annotations in a container's OCI spec say about grouping:
// containers of one pod share one shim and one VM.

export const CONTAINER_TYPE = 'io.kubernetes.cri.container-type';
export const SANDBOX_ID = 'io.kubernetes.cri.sandbox-id';
export const SANDBOX_NAME = 'io.kubernetes.cri.sandbox-name';
export const SANDBOX_NAMESPACE = 'io.kubernetes.cri.sandbox-namespace';
export const SANDBOX_UID = 'io.kubernetes.cri.sandbox-uid';

export type ContainerKind = 'sandbox' | 'pod-container' | 'single';

export function containerKind(annotations: Record<string, string> | undefined): ContainerKind {
  const type = annotations?.[CONTAINER_TYPE];
  if (type === 'container' && annotations?.[SANDBOX_ID]) return 'pod-container';
  if (type === 'sandbox') return 'sandbox';
  return 'single';
}

/** The id of the sandbox (and so of the shim and VM) a task belongs to. */
export function sandboxIdOf(taskId: string, annotations: Record<string, string> | undefined): string {
  return containerKind(annotations) === 'pod-container' ? annotations![SANDBOX_ID]! : taskId;
}

/** The Kubernetes pod a spec belongs to, as containerd's CRI plugin names it; undefined outside CRI. */
export function podOf(annotations: Record<string, string> | undefined): { name: string; namespace: string; uid: string } | undefined {
  const name = annotations?.[SANDBOX_NAME];
  if (!name) return undefined;
  return { name, namespace: annotations[SANDBOX_NAMESPACE] ?? '', uid: annotations[SANDBOX_UID] ?? '' };
}
