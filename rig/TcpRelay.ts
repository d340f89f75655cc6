import net from "node:net";

/** How the relay treats the link; all zero: a plain relay. */
export interface RelaySettings {
  /** Each chunk is held this long, in each direction (order is kept). */
  delayMs: number;
  /** Plus a random 0..jitterMs per chunk (never reordering: a chunk waits for the one before it). */
  jitterMs: number;
  /**
   * Mean lifetime of a connection, in ms: each is reset (RST to both ends) after a random time drawn from an
   * exponential distribution with this mean; 0: never. A lossy link that TCP cannot hide: the peers see the
   * connection drop, as behind a NAT or firewall that loses its state, or after a long outage. A change
   * of the mean applies to open connections too.
   */
  dropMeanMs: number;
  /** Share (0..1) of new connections refused at once (reset on accept). */
  refuseRate: number;
}

export const PLAIN: RelaySettings = { delayMs: 0, jitterMs: 0, dropMeanMs: 0, refuseRate: 0 };

export interface RelayStats {
  connections: number;
  open: number;
  dropped: number;
  refused: number;
  bytesUp: number;
  bytesDown: number;
}

/**
 * A userland TCP relay that makes a link slow and lossy where the kernel cannot (no netem qdisc here): it
 * accepts on `listen`, connects each accepted connection to `target`, and forwards both ways, delaying every
 * chunk and resetting connections at random, per `settings`, which may change while it runs (new delays apply
 * to chunks that arrive after the change; a new drop mean to every connection, open or new).
 */
export class TcpRelay {
  private readonly server: net.Server;
  private settings: RelaySettings = { ...PLAIN };
  private readonly sockets = new Set<net.Socket>();
  /** Open connections: each can (re)draw its drop time when the settings change. */
  private readonly connections = new Set<{ scheduleDrop: () => void }>();
  readonly stats: RelayStats = { connections: 0, open: 0, dropped: 0, refused: 0, bytesUp: 0, bytesDown: 0 };
  /** Hears of every connection the relay resets on purpose (a drop). */
  onDrop: () => void = () => undefined;

  constructor(private readonly target: { host: string; port: number }) {
    this.server = net.createServer({ noDelay: true }, (client) => this.accept(client));
  }

  listen(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => resolve());
    });
  }

  /** Changes the settings; open connections draw their drop time again under the new mean (exponential: memoryless). */
  set(settings: Partial<RelaySettings>): RelaySettings {
    this.settings = { ...this.settings, ...settings };
    for (const connection of this.connections) connection.scheduleDrop();
    return this.settings;
  }

  get current(): RelaySettings {
    return { ...this.settings };
  }

  private accept(client: net.Socket): void {
    const s = this.settings;
    this.stats.connections++;
    if (s.refuseRate > 0 && Math.random() < s.refuseRate) {
      this.stats.refused++;
      client.resetAndDestroy();
      return;
    }
    this.stats.open++;
    const upstream = net.connect({ host: this.target.host, port: this.target.port, noDelay: true });
    this.sockets.add(client);
    this.sockets.add(upstream);
    let closed = false;
    let dropTimer: NodeJS.Timeout | undefined;
    const connection = {
      scheduleDrop: () => {
        clearTimeout(dropTimer);
        const mean = this.settings.dropMeanMs;
        if (mean <= 0 || closed) return;
        const lifetime = -Math.log(1 - Math.random()) * mean;
        dropTimer = setTimeout(() => {
          if (closed) return;
          this.stats.dropped++;
          close(true);
          this.onDrop();
        }, lifetime);
      },
    };
    const close = (reset: boolean) => {
      if (closed) return;
      closed = true;
      clearTimeout(dropTimer);
      this.connections.delete(connection);
      this.stats.open--;
      for (const socket of [client, upstream]) {
        this.sockets.delete(socket);
        if (reset) socket.resetAndDestroy();
        else socket.destroy();
      }
    };
    this.pipe(client, upstream, (n) => (this.stats.bytesUp += n), () => close(false));
    this.pipe(upstream, client, (n) => (this.stats.bytesDown += n), () => close(false));
    client.on("error", () => close(true));
    upstream.on("error", () => close(true));
    this.connections.add(connection);
    connection.scheduleDrop();
  }

  /**
   * Forwards from → to, each chunk after the delay in force when it arrived, in order (one queue and one
   * timer per direction: timers of nearby due times may fire out of order, which would corrupt the stream);
   * ends `to` after the last one.
   */
  private pipe(from: net.Socket, to: net.Socket, count: (bytes: number) => void, onClose: () => void): void {
    const queue: { due: number; chunk: Buffer }[] = [];
    let timer: NodeJS.Timeout | undefined;
    let ended = false;
    let closed = false;
    const settle = () => {
      if (queue.length > 0) return;
      if (ended) to.end();
      if (closed) onClose();
    };
    const flush = () => {
      timer = undefined;
      const now = Date.now();
      while (queue.length > 0 && queue[0].due <= now) {
        const { chunk } = queue.shift()!;
        if (!to.destroyed) to.write(chunk);
      }
      if (queue.length > 0) timer = setTimeout(flush, Math.max(1, queue[0].due - now));
      else settle();
    };
    from.on("data", (chunk: Buffer) => {
      count(chunk.length);
      const { delayMs, jitterMs } = this.settings;
      if (delayMs === 0 && jitterMs === 0 && queue.length === 0) {
        to.write(chunk);
        return;
      }
      const last = queue.length > 0 ? queue[queue.length - 1].due : 0;
      queue.push({ due: Math.max(last, Date.now() + delayMs + Math.random() * jitterMs), chunk });
      if (!timer) timer = setTimeout(flush, Math.max(1, queue[0].due - Date.now()));
    });
    from.on("end", () => {
      ended = true;
      settle();
    });
    from.on("close", () => {
      closed = true;
      settle();
    });
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
