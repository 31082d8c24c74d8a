// The ttrpc server: a registry of services plus the set of live connections.
// Wire handling per connection lives in server-connection.ts.
import { chmod } from 'node:fs/promises';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../../common/log.js';
import { DEFAULT_MAX_MESSAGE_BYTES } from './frame.js';
import type { ServiceMethods, UnaryMethod } from './method.js';
import { ServerConnection, type ConnectionHost } from './server-connection.js';
import { Code, TtrpcError } from './status.js';

export interface TtrpcServerOptions {
  logger: Logger;
  /** Largest frame body accepted or sent; ttrpc's own limit by default. */
  maxMessageBytes?: number;
}

export interface CloseOptions {
  /**
   * How long to let in-flight calls finish (and their answers go out) before
   * cutting connections. 0 by default: a Shutdown handler that closes the
   * server is itself in flight, so waiting must be opt-in and bounded.
   */
  graceMs?: number;
}

export class TtrpcServer {
  readonly #host: ConnectionHost;
  readonly #log: Logger;
  readonly #services = new Map<string, ServiceMethods>();
  readonly #connections = new Set<ServerConnection>();
  readonly #listeners = new Set<net.Server>();
  #nextConnectionId = 1;
  #isClosed = false;

  constructor(options: TtrpcServerOptions) {
    this.#log = options.logger;
    this.#host = {
      logger: options.logger,
      maxMessageBytes: options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
      lookup: (service, method) => this.#lookup(service, method),
    };
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  /** Adds a service by its full proto name, e.g. "containerd.task.v2.Task". */
  register(service: string, methods: ServiceMethods): void {
    if (this.#services.has(service)) throw new Error(`ttrpc: service ${service} is already registered`);
    this.#services.set(service, methods);
  }

  /**
   * Listens on a unix socket path (which must not exist yet; its folder must). Resolves once
   * accepting. The socket is its owner's only (0600), as containerd's own shims make theirs: the
   * Task API controls every container behind it.
   */
  async listen(path: string): Promise<net.Server> {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    try {
      await chmod(path, 0o600);
    } catch (err) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      throw err;
    }
    this.serve(server);
    return server;
  }

  /** Accepts connections from a server the caller created (and may have been handed as a listening fd). */
  serve(server: net.Server): void {
    this.#listeners.add(server);
    server.on('connection', (socket) => this.handleConnection(socket));
    server.on('error', (err) => this.#log.error('ttrpc: listener error', { error: err }));
  }

  /** Serves one already-connected stream. */
  handleConnection(socket: Duplex): void {
    if (this.#isClosed) {
      socket.destroy();
      return;
    }
    const connection = new ServerConnection(this.#nextConnectionId++, socket, this.#host);
    this.#connections.add(connection);
    socket.once('close', () => this.#connections.delete(connection));
  }

  /** Stops accepting, optionally lets in-flight calls finish, then closes every connection. */
  async close(options: CloseOptions = {}): Promise<void> {
    this.#isClosed = true;
    const listenersClosed = [...this.#listeners].map((server) => new Promise<void>((resolve) => server.close(() => resolve())));
    const graceMs = options.graceMs ?? 0;
    if (graceMs > 0) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
      await Promise.race([Promise.all([...this.#connections].map((c) => c.idle())), timeout]);
      clearTimeout(timer);
    }
    for (const connection of this.#connections) connection.destroy();
    await Promise.all(listenersClosed);
  }

  #lookup(service: string, method: string): UnaryMethod {
    const methods = this.#services.get(service);
    if (methods === undefined) throw new TtrpcError(Code.UNIMPLEMENTED, `service ${service}`);
    const found = Object.hasOwn(methods, method) ? methods[method] : undefined;
    if (found === undefined) throw new TtrpcError(Code.UNIMPLEMENTED, `method ${method}`);
    return found;
  }
}
