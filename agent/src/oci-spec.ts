// The parts of the OCI runtime spec the agent reads or rewrites. Unknown
// fields are kept as they are: the spec travels to crun unchanged otherwise.

export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface OciUser {
  uid: number;
  gid: number;
  additionalGids?: number[];
  umask?: number;
}

export interface OciProcess {
  terminal?: boolean;
  consoleSize?: { height: number; width: number };
  user: OciUser;
  args?: string[];
  env?: string[];
  cwd: string;
  apparmorProfile?: string;
  selinuxLabel?: string;
  [key: string]: unknown;
}

export interface OciNamespace {
  type: string;
  path?: string;
}

export interface OciLinux {
  namespaces?: OciNamespace[];
  cgroupsPath?: string;
  resources?: Record<string, unknown>;
  mountLabel?: string;
  [key: string]: unknown;
}

export interface OciSpec {
  ociVersion: string;
  process?: OciProcess;
  root?: { path: string; readonly?: boolean };
  hostname?: string;
  mounts?: OciMount[];
  hooks?: Record<string, unknown>;
  annotations?: Record<string, string>;
  linux?: OciLinux;
  [key: string]: unknown;
}
