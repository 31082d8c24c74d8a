// A CRI client: runtime.v1's RuntimeService and ImageService over grpc-js on
// containerd's socket, with the schema taken out of the installed containerd
// at build time (proto/extract-cri.mjs). Enough for tests and for a pod
// walk-through without crictl; messages are plain objects with camelCase
// field names, 64-bit numbers as numbers and enums by name.
import { credentials, loadPackageDefinition, Metadata, type Client, type GrpcObject, type ServiceError } from '@grpc/grpc-js';
import { fromJSON } from '@grpc/proto-loader';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The schema in a checkout, and its name beside a bundled kata-ts command (shim/ of a runtime folder). */
const SCHEMA_IN_CHECKOUT = 'proto/gen/cri/runtime-v1.json';
export const SCHEMA_BESIDE_BUNDLE = 'cri-runtime-v1.json';

export class CriError extends Error {
  constructor(
    readonly method: string,
    readonly code: number,
    readonly details: string,
  ) {
    super(`CRI ${method}: ${details} (code ${code})`);
    this.name = 'CriError';
  }
}

/** Beside the bundle that runs, else the checkout's (make proto writes it). */
function schemaPath(): string {
  const self = typeof __filename === 'string' ? __filename : fileURLToPath(import.meta.url);
  const beside = join(dirname(self), SCHEMA_BESIDE_BUNDLE);
  if (existsSync(beside)) return beside;
  for (let dir = dirname(self); dirname(dir) !== dir; dir = dirname(dir)) {
    const candidate = join(dir, SCHEMA_IN_CHECKOUT);
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`CRI schema not found beside ${self} nor as ${SCHEMA_IN_CHECKOUT} above it (run make proto)`);
}

type Message = Record<string, unknown>;
type UnaryFn = (req: Message, md: Metadata, opts: { deadline: number }, cb: (err: ServiceError | null, res: Message) => void) => void;

export interface KeyValue {
  key: string;
  value: string;
}

export interface PodSandboxConfig {
  metadata: { name: string; uid: string; namespace: string; attempt?: number };
  hostname?: string;
  logDirectory?: string;
  dnsConfig?: { servers?: string[]; searches?: string[]; options?: string[] };
  portMappings?: { protocol?: 'TCP' | 'UDP' | 'SCTP'; containerPort: number; hostPort?: number; hostIp?: string }[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  linux?: Message;
}

export interface ContainerConfig {
  metadata: { name: string; attempt?: number };
  image: { image: string };
  command?: string[];
  args?: string[];
  workingDir?: string;
  envs?: KeyValue[];
  mounts?: {
    containerPath: string;
    hostPath: string;
    readonly?: boolean;
    propagation?: 'PROPAGATION_PRIVATE' | 'PROPAGATION_HOST_TO_CONTAINER' | 'PROPAGATION_BIDIRECTIONAL';
  }[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  logPath?: string;
  stdin?: boolean;
  stdinOnce?: boolean;
  tty?: boolean;
  linux?: Message;
}

export interface ExecSyncResult {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
}

export class CriClient {
  readonly #runtime: Client;
  readonly #image: Client;

  private constructor(
    socketPath: string,
    private readonly timeoutMs: number,
  ) {
    const definition = fromJSON(JSON.parse(readFileSync(schemaPath(), 'utf8')) as Parameters<typeof fromJSON>[0], {
      longs: Number,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    const v1 = (loadPackageDefinition(definition).runtime as GrpcObject).v1 as GrpcObject;
    const make = (name: string) => new (v1[name] as new (target: string, creds: unknown) => Client)(`unix://${socketPath}`, credentials.createInsecure());
    this.#runtime = make('RuntimeService');
    this.#image = make('ImageService');
  }

  /** A client of the CRI server on a unix socket (containerd's own socket). timeoutMs bounds each call. */
  static connect(socketPath: string, timeoutMs = 120_000): CriClient {
    return new CriClient(socketPath, timeoutMs);
  }

  close(): void {
    this.#runtime.close();
    this.#image.close();
  }

  /** Any RuntimeService method by its name in the proto (e.g. "RunPodSandbox"), with a deadline. */
  runtimeCall<T = Message>(method: string, request: Message, timeoutMs = this.timeoutMs): Promise<T> {
    return this.#unary(this.#runtime, method, request, timeoutMs) as Promise<T>;
  }

  imageCall<T = Message>(method: string, request: Message, timeoutMs = this.timeoutMs): Promise<T> {
    return this.#unary(this.#image, method, request, timeoutMs) as Promise<T>;
  }

  #unary(client: Client, method: string, request: Message, timeoutMs: number): Promise<Message> {
    const fn = (client as unknown as Record<string, UnaryFn | undefined>)[method];
    if (typeof fn !== 'function') return Promise.reject(new Error(`CRI has no method ${method}`));
    return new Promise((resolve, reject) => {
      fn.call(client, request, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
        err ? reject(new CriError(method, err.code, err.details || err.message)) : resolve(res),
      );
    });
  }

  async version(): Promise<{ runtimeName: string; runtimeVersion: string; runtimeApiVersion: string }> {
    return this.runtimeCall('Version', { version: 'v1' });
  }

  async runPodSandbox(config: PodSandboxConfig, runtimeHandler: string): Promise<string> {
    const res = await this.runtimeCall<{ podSandboxId: string }>('RunPodSandbox', { config, runtimeHandler });
    return res.podSandboxId;
  }

  async stopPodSandbox(podSandboxId: string): Promise<void> {
    await this.runtimeCall('StopPodSandbox', { podSandboxId });
  }

  async removePodSandbox(podSandboxId: string): Promise<void> {
    await this.runtimeCall('RemovePodSandbox', { podSandboxId });
  }

  async podSandboxStatus(podSandboxId: string, verbose = false): Promise<{ status: Message; info: Record<string, string> }> {
    return this.runtimeCall('PodSandboxStatus', { podSandboxId, verbose });
  }

  async listPodSandbox(): Promise<Message[]> {
    return (await this.runtimeCall<{ items: Message[] }>('ListPodSandbox', {})).items;
  }

  async createContainer(podSandboxId: string, config: ContainerConfig, sandboxConfig: PodSandboxConfig): Promise<string> {
    const res = await this.runtimeCall<{ containerId: string }>('CreateContainer', { podSandboxId, config, sandboxConfig });
    return res.containerId;
  }

  async startContainer(containerId: string): Promise<void> {
    await this.runtimeCall('StartContainer', { containerId });
  }

  /** SIGTERM, then SIGKILL after timeoutSeconds, as kubelet stops a container. */
  async stopContainer(containerId: string, timeoutSeconds: number): Promise<void> {
    await this.runtimeCall('StopContainer', { containerId, timeout: timeoutSeconds }, this.timeoutMs + timeoutSeconds * 1000);
  }

  async removeContainer(containerId: string): Promise<void> {
    await this.runtimeCall('RemoveContainer', { containerId });
  }

  async containerStatus(containerId: string): Promise<{ status: Message & { state: string; exitCode: number; logPath: string } }> {
    return this.runtimeCall('ContainerStatus', { containerId });
  }

  async listContainers(podSandboxId?: string): Promise<(Message & { id: string; state: string })[]> {
    const filter = podSandboxId ? { podSandboxId } : {};
    return (await this.runtimeCall<{ containers: (Message & { id: string; state: string })[] }>('ListContainers', { filter })).containers;
  }

  async execSync(containerId: string, cmd: string[], timeoutSeconds = 60): Promise<ExecSyncResult> {
    const res = await this.runtimeCall<ExecSyncResult>('ExecSync', { containerId, cmd, timeout: timeoutSeconds }, this.timeoutMs + timeoutSeconds * 1000);
    return { stdout: Buffer.from(res.stdout), stderr: Buffer.from(res.stderr), exitCode: res.exitCode };
  }

  /** The streaming server's URL for an exec (kubelet's remotecommand protocol). */
  async exec(request: { containerId: string; cmd: string[]; tty?: boolean; stdin?: boolean; stdout?: boolean; stderr?: boolean }): Promise<string> {
    return (await this.runtimeCall<{ url: string }>('Exec', { stdout: true, stderr: !request.tty, ...request })).url;
  }

  async attach(request: { containerId: string; tty?: boolean; stdin?: boolean; stdout?: boolean; stderr?: boolean }): Promise<string> {
    return (await this.runtimeCall<{ url: string }>('Attach', { stdout: true, stderr: !request.tty, ...request })).url;
  }

  async containerStats(containerId: string): Promise<Message> {
    return (await this.runtimeCall<{ stats: Message }>('ContainerStats', { containerId })).stats;
  }

  async listContainerStats(podSandboxId?: string): Promise<Message[]> {
    const filter = podSandboxId ? { podSandboxId } : {};
    return (await this.runtimeCall<{ stats: Message[] }>('ListContainerStats', { filter })).stats;
  }

  async updateContainerResources(containerId: string, linux: Message): Promise<void> {
    await this.runtimeCall('UpdateContainerResources', { containerId, linux });
  }

  async imageStatus(image: string): Promise<Message | null> {
    return (await this.imageCall<{ image: Message | null }>('ImageStatus', { image: { image } })).image;
  }
}
