// The one SSH layer: pooled connections, host-key pinning, retries, escalation, atomic file writes
// and backups. Every resource reaches its host through `withHost`, nothing else speaks SSH.
import { createHash } from "crypto";
import { Client, ClientChannel, ConnectConfig } from "ssh2";
import { BACKUP_ROOT } from "../hostRecords";
import { countConnection, countRoundTrip, timingClock } from "../timings";
import { Connection, connectionIdentity, connectionLabel, fingerprintOfKeyBlob, pinnedHostKey, privateKeyProblem } from "./connection";
import { describeHostKey, hostKeyAlgorithmsFor, hostKeyFile, readServerHello } from "./hostKeys";
import { describeCommand, shellCommand, ShellArg } from "./quote";

export interface ExecOptions {
  stdin?: string | Uint8Array;
  /** Default 120 s; rebuilding an initramfs under emulation wants more. */
  timeoutMs?: number;
  /** Run as root through sudo/doas when the login user is not root (default true). */
  escalate?: boolean;
  /** The command only reads: the reads of this run stay valid (see `reads`). Any other command forgets them. */
  readOnly?: boolean;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
}

export interface RemoteHost {
  readonly label: string;
  /** Whether commands run through sudo/doas (a non-root login), unless told not to escalate. */
  readonly escalates: boolean;
  exec(argv: readonly ShellArg[], options?: ExecOptions): Promise<ExecResult>;
  /** Like exec, but a non-zero exit is an error that names the command and quotes its stderr. */
  run(argv: readonly ShellArg[], options?: ExecOptions): Promise<ExecResult>;
  /** The file's bytes, or undefined when it does not exist. */
  readFile(path: string): Promise<Buffer | undefined>;
  /**
   * Temp file in the same directory, checked against the byte count and SHA-256 sent with it, fsync,
   * rename: a reader sees the old or the new bytes, never half, even when the connection drops
   * mid-transfer. A symlink is written through: the file it names changes, the link stays.
   */
  writeFileAtomic(path: string, data: string | Uint8Array, options?: { mode?: string }): Promise<void>;
  /** Saves the original bytes (or the fact that there were none) the first time; later calls keep the first. */
  backupOnce(path: string): Promise<void>;
  /** The saved original: its bytes, `"absent"` when the file did not exist, undefined when there is no backup. */
  readBackup(path: string): Promise<Buffer | "absent" | undefined>;
  /**
   * Puts the original bytes back (or removes a file that did not exist) and forgets the backup.
   * With `ifSha256`, only when the file still has that hash (what this stack last wrote): otherwise
   * the file and its backup stay as they are and the answer is "edited".
   */
  restoreBackup(path: string, options?: { ifSha256?: string }): Promise<RestoreOutcome>;
  /**
   * Writes `text`, the file with our changes taken out. When that equals the backup (nobody else
   * edited the file meanwhile) the backup itself goes back, with its mode and owner, and is dropped.
   */
  revertFile(path: string, text: string): Promise<void>;
  /** Drops the pooled connection, e.g. after asking the host to reboot; the next command reconnects. */
  disconnect(): Promise<void>;
  /**
   * What this process read from the host since anything may have changed it, by what was read
   * (see `readsOf`): resources checked one after another share one read of the same facts.
   */
  reads(): Map<string, Promise<unknown>>;
}

export type RestoreOutcome = "restored" | "removed" | "no-backup" | "edited";

/** The hex SHA-256 of what is (or will be) written: what verified writes and restores compare. */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

export class RemoteCommandError extends Error {
  constructor(
    readonly label: string,
    readonly command: string,
    readonly result: ExecResult,
  ) {
    super(
      `${label}: \`${command}\` exited with ${result.code}` +
        (result.stderr.trim() ? `: ${result.stderr.trim().slice(-2000)}` : ""),
    );
  }
}

/**
 * The host cannot be trusted as pinned: another key, no key of the pinned type, a failed key
 * exchange. Waiting will not help, so it is reported at once.
 */
export class HostKeyMismatchError extends Error {}
/** The credentials cannot log in as given (a key that does not decrypt, no agent, a refused login): waiting will not help. */
export class CredentialError extends Error {}
/** The connection closed before the handshake completed, without an error of its own (an sshd going down or not up yet). */
class ClosedDuringHandshakeError extends Error {}
/** The command was never started: the connection would not open a channel for it. */
class ChannelOpenError extends Error {}

const MISSING_FILE_EXIT = 44;
const MAX_CHANNELS_PER_HOST = 6; // OpenSSH allows 10 sessions per connection (MaxSessions)
const IDLE_CLOSE_MS = 5_000;
const CHANNEL_OPEN_TRIES = 5;

const counters = { connectionsOpened: 0 };
/** How many SSH connections this process opened (the e2e tests report it). */
export function sshStats(): { connectionsOpened: number } {
  return { ...counters };
}

interface PooledConnection {
  client: Client;
  active: number;
  waiters: Array<() => void>;
  idleTimer?: NodeJS.Timeout;
}

/** Pooled connections by identity (connectionIdentity): who logs in, the pinned key, the credential. */
const pool = new Map<string, Promise<PooledConnection>>();

/**
 * The reads of this run, per host, then per identity (a read over a connection one resource would
 * not trust is never handed to it). The engine checks resources one at a time, and several read the
 * same facts (the next kernel, the trial-boot support, a backup): each is read once and shared
 * until anything may have changed it. Forgotten for the whole host, before and after, by every
 * command that is not marked read-only (a write, a rebuild, a reboot), by the end of a connection
 * (the host may have rebooted) and by taking the host lock (another run may have changed the host
 * meanwhile), so a change always plans from fresh reads; only a preview can see facts a few seconds old.
 */
const hostReads = new Map<string, Map<string, Map<string, Promise<unknown>>>>();
let readsShared = false;

/**
 * Turns the sharing on for this process: the dynamic provider's, which lives for one Pulumi run.
 * Other callers (discovery, the tests, the demo) look at the host afresh every time.
 */
export function shareReadsInThisProcess(share = true): void {
  readsShared = share;
  hostReads.clear();
}

function readsOf(connection: Connection): Map<string, Promise<unknown>> {
  if (!readsShared) return new Map();
  const label = connectionLabel(connection);
  const identity = connectionIdentity(connection);
  const byIdentity = hostReads.get(label) ?? new Map<string, Map<string, Promise<unknown>>>();
  hostReads.set(label, byIdentity);
  const reads = byIdentity.get(identity) ?? new Map<string, Promise<unknown>>();
  byIdentity.set(identity, reads);
  return reads;
}

/** Forgets what was read from the host, over any connection: it may have changed. A read in flight lands in the forgotten map. */
export function forgetReads(connection: Connection): void {
  hostReads.delete(connectionLabel(connection));
}

/** A read through the host's read cache: the first caller reads, the others share its answer. */
function cachedRead<T>(connection: Connection, key: string, read: () => Promise<T>): Promise<T> {
  const reads = readsOf(connection);
  const known = reads.get(key) as Promise<T> | undefined;
  if (known) return known;
  const reading = read();
  reads.set(key, reading);
  reading.catch(() => {
    if (reads.get(key) === reading) reads.delete(key);
  });
  return reading;
}

/** Runs `fn` with the host behind `connection`, on a pooled connection shared by every resource of this process that trusts and logs in alike. */
export async function withHost<T>(connection: Connection, fn: (host: RemoteHost) => Promise<T>): Promise<T> {
  return fn(remoteHost(connection));
}

/**
 * A command that runs for as long as the caller holds it (the host lock): its stdin stays open,
 * and it keeps a channel of the pooled connection, so the connection is not closed as idle under it.
 * `release` closes its stdin; `closed` settles when the command ended, whoever ended it.
 */
export interface HeldCommand {
  readonly lines: AsyncIterator<string>;
  write(text: string): void;
  release(): void;
  readonly closed: Promise<void>;
}

export async function holdCommand(connection: Connection, argv: readonly ShellArg[]): Promise<HeldCommand> {
  const words = [...escalationPrefix(connection), ...argv];
  let opened!: (held: HeldCommand) => void;
  let failed!: (err: Error) => void;
  const ready = new Promise<HeldCommand>((resolve, reject) => ((opened = resolve), (failed = reject)));
  // The channel slot is held until the command ends: withChannel's callback resolves then.
  void withChannel(connection, (client) => new Promise<void>((done) => {
    client.exec(shellCommand(words) as unknown as string, (err, channel: ClientChannel) => {
      if (err) {
        done();
        return failed(err);
      }
      const queue: string[] = [];
      const readers: Array<(r: IteratorResult<string>) => void> = [];
      let ended = false;
      let partial = "";
      const push = (r: IteratorResult<string>) => {
        const reader = readers.shift();
        if (reader) reader(r);
        else if (!r.done) queue.push(r.value);
      };
      channel.on("data", (d: Buffer) => {
        const parts = (partial + d.toString("utf8")).split("\n");
        partial = parts.pop()!;
        parts.forEach((line) => push({ value: line, done: false }));
      });
      channel.stderr.resume();
      const closed = new Promise<void>((resolve) =>
        channel.on("close", () => {
          ended = true;
          while (readers.length > 0) push({ value: undefined, done: true });
          done();
          resolve();
        }),
      );
      opened({
        lines: {
          next: () =>
            queue.length > 0
              ? Promise.resolve({ value: queue.shift()!, done: false })
              : ended
                ? Promise.resolve({ value: undefined, done: true })
                : new Promise((resolve) => readers.push(resolve)),
        },
        write: (text) => {
          if (!ended) channel.write(text);
        },
        release: () => {
          if (!ended) channel.end();
        },
        closed,
      });
    });
  })).catch(failed);
  return ready;
}

/** Takes the connection out of the pool, so the next command opens a new one; it ends once idle. */
function retire(connection: Connection): void {
  const key = connectionIdentity(connection);
  const entry = pool.get(key);
  pool.delete(key);
  void entry?.then((pooled) => {
    if (pooled.active === 0) pooled.client.end();
  }, () => undefined);
}

/** Closes every pooled connection (tests, and a provider that is shutting down). */
export async function closeAllConnections(): Promise<void> {
  const entries = [...pool.values()];
  pool.clear();
  await Promise.all(
    entries.map(async (p) => {
      const c = await p.catch(() => undefined);
      if (c) {
        clearTimeout(c.idleTimer);
        c.client.end();
      }
    }),
  );
}

function remoteHost(connection: Connection): RemoteHost {
  const label = connectionLabel(connection);
  const escalation = escalationPrefix(connection);

  const exec = async (argv: readonly ShellArg[], options: ExecOptions = {}): Promise<ExecResult> => {
    if (!options.readOnly) forgetReads(connection);
    try {
      return await execOnce(argv, options);
    } finally {
      if (!options.readOnly) forgetReads(connection);
    }
  };

  const execOnce = async (argv: readonly ShellArg[], options: ExecOptions): Promise<ExecResult> => {
    const words = options.escalate === false ? argv : [...escalation, ...argv];
    const attempt = () =>
      withChannel(connection, async (client) => {
        const started = timingClock();
        try {
          return await execOnClient(client, shellCommand(words), options, describeCommand(argv), label);
        } finally {
          countRoundTrip(started, describeCommand(argv));
        }
      });
    // A channel that could not be opened never ran its command, so it is safe to try again. sshd
    // refuses a channel past MaxSessions, and it still counts channels whose close is on its way (a
    // burst of commands ending together): a moment later the same connection takes it. A connection
    // that ended (the host rebooted, sshd was killed) has left the pool, and the next try opens a new
    // one. Nothing here ends a connection: the commands still running on it would be cut.
    for (let tries = 1; ; tries++) {
      try {
        return await attempt();
      } catch (err) {
        if (!(err instanceof ChannelOpenError) || tries >= CHANNEL_OPEN_TRIES) throw err;
        // Last try on a new connection, in case this one is dead without having noticed.
        if (tries === CHANNEL_OPEN_TRIES - 1) retire(connection);
        await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** (tries - 1)));
      }
    }
  };

  const run = async (argv: readonly ShellArg[], options?: ExecOptions): Promise<ExecResult> => {
    const result = await exec(argv, options);
    if (result.code !== 0) {
      throw new RemoteCommandError(label, describeCommand(argv), result);
    }
    return result;
  };

  const readFile = (path: string): Promise<Buffer | undefined> =>
    cachedRead(connection, `file ${path}`, async () => {
      const result = await exec(["sh", "-c", `[ -e "$1" ] || exit ${MISSING_FILE_EXIT}; exec cat -- "$1"`, "sh", path], { readOnly: true });
      if (result.code === MISSING_FILE_EXIT) return undefined;
      if (result.code !== 0) throw new RemoteCommandError(label, `read ${path}`, result);
      return result.stdoutBytes;
    });

  const writeFileAtomic = async (path: string, data: string | Uint8Array, options: { mode?: string } = {}) => {
    const size = typeof data === "string" ? Buffer.byteLength(data) : data.byteLength;
    const argv = ["sh", "-c", ATOMIC_WRITE_SCRIPT, "sh", path, options.mode ?? "0644", String(size), sha256Hex(data)];
    const result = await exec(argv, { stdin: data });
    if (result.code === INCOMPLETE_WRITE_EXIT) {
      throw new Error(`${label}: ${path} was not replaced: ${result.stderr.trim()}; the file keeps its previous bytes`);
    }
    if (result.code !== 0) throw new RemoteCommandError(label, `write ${path}`, result);
  };

  const backupOnce = async (path: string) => {
    await run(["sh", "-c", BACKUP_SCRIPT, "sh", path, BACKUP_ROOT + path]);
  };

  const readBackup = (path: string): Promise<Buffer | "absent" | undefined> =>
    cachedRead(connection, `backup ${path}`, async () => {
      const result = await run(["sh", "-c", READ_BACKUP_SCRIPT, "sh", BACKUP_ROOT + path], { readOnly: true });
      const tag = result.stdoutBytes.subarray(0, 1).toString();
      return tag === "F" ? result.stdoutBytes.subarray(1) : tag === "A" ? "absent" : undefined;
    });

  const restoreBackup = async (path: string, options: { ifSha256?: string } = {}) => {
    const result = await run(["sh", "-c", RESTORE_SCRIPT, "sh", path, BACKUP_ROOT + path, options.ifSha256 ?? ""]);
    return result.stdout.trim() as RestoreOutcome;
  };

  const revertFile = async (path: string, text: string) => {
    const backup = await readBackup(path);
    if (backup instanceof Buffer && backup.equals(Buffer.from(text, "utf8"))) await restoreBackup(path);
    else await writeFileAtomic(path, text);
  };

  const disconnect = async () => {
    forgetReads(connection);
    const key = connectionIdentity(connection);
    const entry = pool.get(key);
    pool.delete(key);
    const pooled = await entry?.catch(() => undefined);
    if (pooled) {
      clearTimeout(pooled.idleTimer);
      pooled.client.end();
    }
  };

  return { label, escalates: escalation.length > 0, exec, run, readFile, writeFileAtomic, backupOnce, readBackup, restoreBackup, revertFile, disconnect, reads: () => readsOf(connection) };
}

const INCOMPLETE_WRITE_EXIT = 65;

// A symlink is followed to the file it names, so the link stays a link (as `sed -i --follow-symlinks`
// does); renaming over the link itself would turn it into a file with the link's own mode (777).
const FOLLOW_SYMLINK = `if [ -L "$target" ]; then target=$(readlink -f -- "$target"); fi`;
// A signal (the session's sshd dying) skips the EXIT trap in dash: clean up on those too.
const TEMP_FILE_TRAPS = `trap 'rm -f -- "$tmp"' EXIT
trap 'rm -f -- "$tmp"; exit 1' HUP INT TERM PIPE`;

// Busybox-compatible (Alpine): stat -c instead of chmod --reference; `sync FILE` fsyncs that file.
// `cat` ends without error when the connection drops mid-transfer, so the temp file is checked
// against the size and hash sent with it before it may replace anything.
const ATOMIC_WRITE_SCRIPT = `set -e
target=$1
${FOLLOW_SYMLINK}
dir=$(dirname -- "$target")
mkdir -p -- "$dir"
tmp=$(mktemp "$dir/.vfio-host.XXXXXX")
${TEMP_FILE_TRAPS}
cat > "$tmp"
size=$(wc -c < "$tmp"); size=$((size))
sum=$(sha256sum < "$tmp"); sum=\${sum%% *}
if [ "$size" != "$3" ] || [ "$sum" != "$4" ]; then
  echo "received $size of $3 bytes (sha256 $sum, expected $4)" >&2
  exit ${INCOMPLETE_WRITE_EXIT}
fi
if [ -e "$target" ]; then
  chmod "$(stat -c %a -- "$target")" "$tmp"
  chown "$(stat -c %u:%g -- "$target")" "$tmp"
else
  chmod "$2" "$tmp"
fi
sync -- "$tmp" 2>/dev/null || sync
mv -f -- "$tmp" "$target"
trap - EXIT
sync -- "$dir" 2>/dev/null || sync`;

// The backup of a file that did not exist is an empty marker "<backup>.absent". The copy is
// complete and fsynced under a temp name before ln(1) gives it the backup's name: link(2) fails
// when that name exists, so a backup is made exactly once and never holds a partial or later file.
const BACKUP_SCRIPT = `set -e
target=$1; dst=$2
${FOLLOW_SYMLINK}
if [ -e "$dst" ] || [ -e "$dst.absent" ]; then exit 0; fi
dir=$(dirname -- "$dst")
mkdir -p -- "$dir"
tmp=$(mktemp "$dir/.vfio-host.XXXXXX")
${TEMP_FILE_TRAPS}
if [ -e "$target" ]; then cp -p -- "$target" "$tmp"; name=$dst; else name=$dst.absent; fi
sync -- "$tmp" 2>/dev/null || sync
ln -- "$tmp" "$name" 2>/dev/null || [ -e "$dst" ] || [ -e "$dst.absent" ]
sync -- "$dir" 2>/dev/null || sync`;

// One tag byte, then the backup's bytes: F (a file), A (the file did not exist), N (no backup).
const READ_BACKUP_SCRIPT = `if [ -e "$1" ]; then printf F; exec cat -- "$1"
elif [ -e "$1.absent" ]; then printf A; else printf N; fi`;

const RESTORE_SCRIPT = `set -e
target=$1; src=$2; expected=$3
${FOLLOW_SYMLINK}
if [ ! -e "$src" ] && [ ! -e "$src.absent" ]; then echo no-backup; exit 0; fi
if [ -n "$expected" ]; then
  if [ -e "$target" ]; then sum=$(sha256sum < "$target"); sum=\${sum%% *}; else sum=absent; fi
  if [ "$sum" != "$expected" ]; then echo edited; exit 0; fi
fi
if [ -e "$src" ]; then
  tmp=$(mktemp "$(dirname -- "$target")/.vfio-host.XXXXXX")
  ${TEMP_FILE_TRAPS}
  cp -p -- "$src" "$tmp"; sync -- "$tmp" 2>/dev/null || sync; mv -f -- "$tmp" "$target"; trap - EXIT
  rm -f -- "$src"; echo restored
else rm -f -- "$target" "$src.absent"; echo removed; fi`;

function escalationPrefix(c: Connection): string[] {
  const mode = c.escalation === "auto" ? (c.user === "root" ? "none" : "sudo") : c.escalation;
  return mode === "sudo" ? ["sudo", "-n", "--"] : mode === "doas" ? ["doas", "-n", "--"] : [];
}

async function withChannel<T>(connection: Connection, fn: (client: Client) => Promise<T>): Promise<T> {
  const key = connectionIdentity(connection);
  let entry = pool.get(key);
  if (!entry) {
    entry = connectWithRetry(connection).then((client) => {
      const pooled: PooledConnection = { client, active: 0, waiters: [] };
      const forget = () => {
        if (pool.get(key) === entry) pool.delete(key);
        // The connection ended (the host rebooting, sshd restarted): what it read may be stale.
        forgetReads(connection);
      };
      client.on("close", forget);
      client.on("error", forget);
      return pooled;
    });
    entry.catch(() => pool.delete(key));
    pool.set(key, entry);
  }
  const pooled = await entry;
  while (pooled.active >= MAX_CHANNELS_PER_HOST) {
    await new Promise<void>((resolve) => pooled.waiters.push(resolve));
  }
  // Here, not before the wait: channels that end together can take `active` to 0, and set the
  // idle timer, before the commands they woke from the wait get here.
  clearTimeout(pooled.idleTimer);
  pooled.active++;
  try {
    return await fn(pooled.client);
  } finally {
    pooled.active--;
    pooled.waiters.shift()?.();
    if (pooled.active === 0) {
      pooled.idleTimer = setTimeout(() => {
        if (pool.get(key) === entry) pool.delete(key);
        pooled.client.end();
      }, IDLE_CLOSE_MS);
      pooled.idleTimer.unref();
    }
  }
}

const CONNECTION_ERRORS = ["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "EPIPE"];

/**
 * Errors worth waiting out, and only those: the host is rebooting, sshd is not up yet, the network
 * blipped. A key, an algorithm or a login the host refuses stays refused (ssh2 gives those the
 * levels "handshake", "client-authentication" and "agent"), so they are reported at once.
 */
function isTransient(err: Error & { code?: string | number; level?: string }): boolean {
  return (
    CONNECTION_ERRORS.includes(String(err.code)) ||
    err.level === "client-timeout" ||
    err instanceof ClosedDuringHandshakeError ||
    // ssh2 (lib/client.js): the socket closed before the server sent its identification line.
    err.message === "Connection lost before handshake"
  );
}

async function connectWithRetry(connection: Connection): Promise<Client> {
  const label = connectionLabel(connection);
  const deadline = Date.now() + connection.readyTimeoutSeconds * 1000;
  let delay = 500;
  let attempts = 0;
  for (;;) {
    attempts++;
    try {
      // The handshake of one attempt may not outlast the whole wait (ssh2's default is 20 s).
      return await connectOnce(connection, Math.min(HANDSHAKE_TIMEOUT_MS, Math.max(1_000, deadline - Date.now())));
    } catch (err) {
      const e = err as Error;
      if (!isTransient(e)) throw e;
      if (Date.now() + delay > deadline) {
        throw new Error(
          `${label}: no SSH connection after ${attempts} attempts in ${connection.readyTimeoutSeconds}s ` +
            `(last error: ${e.message}); check that the host is up and sshd listens on port ${connection.port}, ` +
            `or raise connection.readyTimeoutSeconds`,
          { cause: err },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 5_000);
    }
  }
}

const HANDSHAKE_TIMEOUT_MS = 20_000;

/** The ssh-agent's socket, where the command runs (ssh-agent(1) exports SSH_AUTH_SOCK). */
function agentSocket(label: string): string {
  const socket = process.env.SSH_AUTH_SOCK;
  if (!socket) {
    throw new CredentialError(
      `${label}: the ssh-agent is to be used (vfio-host:sshAgent) but SSH_AUTH_SOCK is not set where pulumi runs; ` +
        "start one and add the key in that shell (eval \"$(ssh-agent)\"; ssh-add ~/.ssh/id_ed25519), or set sshPrivateKey instead",
    );
  }
  return socket;
}

/** What a refused login tried, in the stack's terms. */
function loginMethods(connection: Connection): string {
  return [
    connection.privateKey ? "the private key (vfio-host:sshPrivateKey)" : undefined,
    connection.password ? "the password (vfio-host:sshPassword)" : undefined,
    connection.agent ? `the keys of the ssh-agent at ${process.env.SSH_AUTH_SOCK} (vfio-host:sshAgent)` : undefined,
  ]
    .filter((m) => m !== undefined)
    .join(", ");
}

/** Why the key of `connection` cannot be used, naming the stack's key at fault; undefined when it can. */
function privateKeyError(connection: Connection, label: string): CredentialError | undefined {
  const problem = connection.privateKey === undefined ? undefined : privateKeyProblem(connection.privateKey, connection.passphrase);
  if (!problem) return undefined;
  const name = problem.field === "passphrase" ? "the private key's passphrase (vfio-host:sshPrivateKeyPassphrase)" : "the private key (vfio-host:sshPrivateKey)";
  return new CredentialError(`${label}: ${name} ${problem.message}`);
}

/** What a pin of `hostKey` is called in messages: its key type when the value says it, and its fingerprint. */
function describePin(hostKey: string): string {
  const pin = pinnedHostKey(hostKey);
  const name = pin.keyType === undefined ? undefined : describeKeyType(pin.keyType);
  return name ? `${name} ${pin.fingerprint}` : pin.fingerprint;
}

function describeKeyType(keyType: string): string | undefined {
  return keyType === "ssh-ed25519" ? "ED25519" : keyType.startsWith("ecdsa-") ? "ECDSA" : /rsa/.test(keyType) ? "RSA" : undefined;
}

const REPIN = "`npm run trust -- --stack STACK` (with `--expect SHA256:...`, the fingerprint read on the console)";

/** The host showed another key than the pinned one: both, what to check before trusting the new one, and how to pin it. */
function mismatchError(label: string, hostKey: string, presented: Buffer): HostKeyMismatchError {
  const key = describeHostKey(presented);
  return new HostKeyMismatchError(
    `${label}: host key mismatch, refusing to connect. Pinned (vfio-host:hostKey): ${describePin(hostKey)}; ` +
      `the host presented: ${key.name} ${key.fingerprint}. Either its key changed (a reinstall, a restored image) or ` +
      `something else answers at its address. Check on the host's own console, not over the network: ` +
      `\`ssh-keygen -lf ${hostKeyFile(key)}\` must print ${key.fingerprint}. If it does, pin it again: ` +
      `${REPIN.replace("SHA256:...", key.fingerprint)}; if it does not, do not connect: someone may be intercepting the connection.`,
  );
}

/** No host-key algorithm in common: what the host offers (read from its KEXINIT), what the pin needs. */
async function algorithmError(connection: Connection, label: string, wanted: readonly string[] | undefined, err: Error): Promise<HostKeyMismatchError> {
  const offered = await readServerHello(connection.host, connection.port, 5_000).then(
    (hello) => hello.hostKeyAlgorithms.join(", "),
    (e: Error) => `something this could not read (${e.message})`,
  );
  const needs = wanted ? `the pin (vfio-host:hostKey) needs ${wanted.join(" or ")}` : "ssh2 checks none of them";
  return new HostKeyMismatchError(
    `${label}: the host has no key of the pinned type: it offers ${offered}; ${needs}. ` +
      "If the host was reinstalled with other key types, pin one of the keys it has: `npm run trust -- --stack STACK` lists them " +
      "with their fingerprints (check the one you pin on the host's console); otherwise check the HostKey lines of its sshd_config",
    { cause: err },
  );
}

function connectOnce(connection: Connection, handshakeTimeoutMs: number): Promise<Client> {
  const label = connectionLabel(connection);
  const pin = connection.hostKey ? pinnedHostKey(connection.hostKey) : undefined;
  // A key line says its type: offer only the algorithms that prove that key, so a server with
  // several host keys shows the pinned one (an RSA key by rsa-sha2-512/256, ssh-rsa last).
  const algorithms = pin?.keyType ? hostKeyAlgorithmsFor(pin.keyType) : undefined;
  let presented: Buffer | undefined;
  let failed = false;
  const started = timingClock();
  return new Promise((resolve, reject) => {
    const client = new Client();
    const config: ConnectConfig = {
      host: connection.host,
      port: connection.port,
      username: connection.user,
      privateKey: connection.privateKey,
      passphrase: connection.passphrase,
      password: connection.password,
      agent: connection.agent ? agentSocket(label) : undefined,
      readyTimeout: handshakeTimeoutMs,
      keepaliveInterval: 10_000,
      keepaliveCountMax: 3,
      hostVerifier: (key: Buffer) => {
        presented = key;
        return pin === undefined || fingerprintOfKeyBlob(key) === pin.fingerprint;
      },
      ...(algorithms ? { algorithms: { serverHostKey: algorithms as never } } : {}),
    };
    client
      .once("ready", () => {
        counters.connectionsOpened++;
        countConnection(started);
        resolve(client);
      })
      // Without an error first (whose answer may take a moment, see algorithmError): the server closed mid-handshake.
      .once("close", () => {
        if (!failed) reject(new ClosedDuringHandshakeError(`${label}: the connection closed during the SSH handshake`));
      })
      // `on`, not `once`: ssh2 can emit a second error as the socket closes, and an error event
      // without a listener would be thrown out of the provider process.
      .on("error", (err: Error & { level?: string }) => {
        failed = true;
        client.end();
        if (pin && presented && fingerprintOfKeyBlob(presented) !== pin.fingerprint) {
          reject(mismatchError(label, connection.hostKey!, presented));
        } else if (err.level === "handshake" && /no matching host key format/.test(err.message)) {
          void algorithmError(connection, label, algorithms, err).then(reject);
        } else if (err.level === "handshake") {
          reject(new HostKeyMismatchError(`${label}: the SSH key exchange failed: ${err.message}`, { cause: err }));
        } else if (err.level === "agent") {
          reject(
            new CredentialError(
              `${label}: the ssh-agent at SSH_AUTH_SOCK=${process.env.SSH_AUTH_SOCK} (vfio-host:sshAgent) failed: ${err.message}; ` +
                "is it running? `ssh-add -l` in the shell that runs pulumi lists its keys",
              { cause: err },
            ),
          );
        } else if (err.level === "client-authentication") {
          reject(
            new CredentialError(
              `${label}: the host refused the login with ${loginMethods(connection)}; ` +
                `check that its public key is in ~${connection.user}/.ssh/authorized_keys on the host (or that the password is right)`,
              { cause: err },
            ),
          );
        } else {
          reject(err);
        }
      });
    try {
      client.connect(config);
    } catch (err) {
      // ssh2 reads the private key before connecting and throws when it cannot.
      reject(privateKeyError(connection, label) ?? err);
    }
  });
}

function execOnClient(
  client: Client,
  command: Buffer,
  options: ExecOptions,
  description: string,
  label: string,
): Promise<ExecResult> {
  const timeoutMs = options.timeoutMs ?? 120_000;
  return new Promise((resolve, reject) => {
    client.exec(command as unknown as string, (err, channel: ClientChannel) => {
      if (err) return reject(new ChannelOpenError(`${label}: could not open a channel for \`${description}\`: ${err.message}`, { cause: err }));
      const out: Buffer[] = [];
      const errs: Buffer[] = [];
      let code: number | null = null;
      const timer = setTimeout(() => {
        channel.close();
        reject(new Error(`${label}: \`${description}\` did not finish within ${Math.round(timeoutMs / 1000)}s`));
      }, timeoutMs);
      channel.on("data", (d: Buffer) => out.push(d));
      channel.stderr.on("data", (d: Buffer) => errs.push(d));
      channel.on("exit", (c: number | null, signal?: string) => {
        code = c ?? (signal ? 128 : 255);
      });
      channel.on("close", () => {
        clearTimeout(timer);
        const stdoutBytes = Buffer.concat(out);
        resolve({
          code: code ?? 255,
          stdout: stdoutBytes.toString("utf8"),
          stderr: Buffer.concat(errs).toString("utf8"),
          stdoutBytes,
        });
      });
      if (options.stdin !== undefined) channel.end(options.stdin);
      else channel.end();
    });
  });
}
