// HostReboot: reboots the host when its triggers change (the boot-time resources' outputs), waits
// until it answers with a new boot_id, then proves the result: the kernel command line has the
// arguments and every selected device is driven by vfio-pci. A failed proof fails the deployment
// and is recorded in the state (failedVerification), so the next `up` with the same triggers does
// not reboot again: it checks the boot it finds, and succeeds once that one passes.
import * as pulumi from "@pulumi/pulumi";
import { isDeepStrictEqual } from "util";
import { z } from "zod";
import { cleanupTrials, commitTrial, readTrialRecord, readTrialSupport, stageTrial, Trial, TrialRecord, trialBootLog } from "../bootTrial/host";
import { bootedTrial, isImageInput, StagedFile, StagedFileSchema, TRIAL_MARKER_KEY, trialId, TrialLoader, TrialOptionsSchema } from "../bootTrial/plan";
import { checkInputs, parseChecked } from "../check";
import { KindResource } from "../dynamic";
import { failpoint } from "../failpoint";
import { plainOutputs } from "../hostResource";
import { missingKernelArgs } from "../kernel/cmdline";
import { normalizePciAddress } from "../kernel/pci";
import { comparableConnection, ConnectionInput, ConnectionSchema } from "../ssh/connection";
import { BACKUP_ROOT } from "../hostRecords";
import { RemoteHost, withHost } from "../ssh/host";
import { lockOwner, withHostLock } from "../ssh/hostLock";
import { readSections } from "../ssh/sections";

const RebootSchema = z
  .object({
    connection: ConnectionSchema,
    /** Anything whose change means the host must boot again, e.g. the boot-time resources' states. */
    triggers: z.array(z.unknown()).default([]),
    expectArgs: z.array(z.string()).default([]),
    expectVfioDevices: z
      .array(z.string().refine((a) => normalizePciAddress(a) !== undefined, "expectVfioDevices: write PCI addresses like 0000:00:1d.0"))
      .default([]),
    timeoutSeconds: z.number().int().min(30).max(3600).default(900),
    /** Boot files the boot-time resources staged for a trial boot instead of writing them. */
    staged: z.array(StagedFileSchema).default([]),
    /** Set when the stack runs trial boots: the kernel they boot and whether they need their own initramfs. */
    trial: z.strictObject({ release: z.string().min(1), buildImage: z.boolean(), options: TrialOptionsSchema }).optional(),
  })
  .strict();
type RebootInputs = z.output<typeof RebootSchema>;

export interface BootObservation {
  bootId: string;
  cmdline: string;
  /** PCI address -> driver in use ("" when none). */
  drivers: Record<string, string>;
  /** PCI address -> IOMMU group, known once the IOMMU is on. */
  groups: Record<string, number>;
  /** The `vfio_pci: add [...]` lines of this boot's kernel log. */
  vfioLog: string[];
}

/** Pure: what is wrong with a boot, as "expected ..., found ..." lines. */
export function verifyBoot(observed: BootObservation, expectArgs: readonly string[], devices: readonly string[]): string[] {
  const problems: string[] = [];
  const missing = missingKernelArgs(observed.cmdline, expectArgs);
  if (missing.length > 0) {
    problems.push(`/proc/cmdline lacks ${missing.join(" ")}: expected ${expectArgs.join(" ")}, found "${observed.cmdline.trim()}"`);
  }
  for (const address of devices.map((d) => normalizePciAddress(d)!)) {
    const driver = observed.drivers[address];
    if (driver !== "vfio-pci") {
      problems.push(`${address}: expected driver vfio-pci, found ${driver ? driver : "no driver"}`);
    }
  }
  return problems;
}

async function observeBoot(host: RemoteHost, devices: readonly string[]): Promise<BootObservation> {
  const s = await readSections(
    host,
    {
      bootId: "cat /proc/sys/kernel/random/boot_id",
      cmdline: "cat /proc/cmdline",
      drivers: 'for a in "$@"; do printf "%s %s\\n" "$a" "$(basename "$(readlink "/sys/bus/pci/devices/$a/driver" 2>/dev/null)" 2>/dev/null)"; done',
      groups: 'for a in "$@"; do g=$(readlink "/sys/bus/pci/devices/$a/iommu_group") && printf "%s %s\\n" "$a" "${g##*/}"; done',
      vfioLog: "dmesg | grep -i 'vfio.pci'",
    },
    { args: devices.map((d) => normalizePciAddress(d)!) },
  );
  const drivers: Record<string, string> = {};
  for (const line of s.drivers.split("\n").filter(Boolean)) {
    const [address, driver = ""] = line.split(" ");
    drivers[address] = driver === "." ? "" : driver;
  }
  const groups: Record<string, number> = {};
  for (const line of s.groups.split("\n").filter(Boolean)) {
    const [address, group] = line.split(" ");
    groups[address] = Number(group);
  }
  return { bootId: s.bootId.trim(), cmdline: s.cmdline.trim(), drivers, groups, vfioLog: s.vfioLog.split("\n").filter(Boolean) };
}

// Detached from this SSH session, which dies with the host: systemd-run where there is systemd,
// a backgrounded shell elsewhere (OpenRC on Alpine).
const DETACHED_REBOOT = `if command -v systemd-run >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemd-run --on-active=2 --timer-property=AccuracySec=100ms systemctl reboot
else
  nohup sh -c 'sleep 2; reboot' >/dev/null 2>&1 &
fi`;

/** A boot that did not pass verification, as the state keeps it. */
export interface FailedVerification {
  /** The boot that was checked, or null when none came back in time. */
  bootId: string | null;
  /** The boot before the reboot this resource asked for. */
  previousBootId: string;
  problems: string[];
  /** When it was checked (ISO 8601). */
  at: string;
  /** The trial boot that failed, when the change was booted as one. */
  trial?: string;
}

/** What an update does: reboot for a change, look at the current boot again after a failure, or nothing. */
export type RebootDecision = { kind: "reboot" } | { kind: "recheck"; failed: FailedVerification } | { kind: "nothing" };

// Only triggers and expectations reboot; a new key or timeout is recorded without one.
const REBOOT_KEYS = ["triggers", "expectArgs", "expectVfioDevices", "staged", "trial"] as const;

/** Pure: `olds` are the recorded outputs (inputs and failedVerification), `news` the new inputs. */
export function decideReboot(olds: Record<string, unknown>, news: Record<string, unknown>): RebootDecision {
  if (!sameInputs(olds, news, REBOOT_KEYS)) return { kind: "reboot" };
  const failed = olds.failedVerification as FailedVerification | undefined;
  return failed ? { kind: "recheck", failed } : { kind: "nothing" };
}

/** Pure: what is wrong with the boot found on a later run, after `failed` was recorded. */
export function recheckProblems(failed: FailedVerification, observed: BootObservation, expectArgs: readonly string[], devices: readonly string[]): string[] {
  if (observed.bootId === failed.previousBootId) {
    return [`the host is still on boot ${observed.bootId}, from before the reboot asked for at ${failed.at}, so nothing new can be verified`];
  }
  return verifyBoot(observed, expectArgs, devices);
}

const RETRY_TRIAL = "Not retrying without a change: fix the cause and run `pulumi up`, or retry the same trial with `pulumi up --replace URN` (this HostReboot's URN, from `pulumi stack --show-urns`).";
const FORCE_REBOOT = "force a new reboot with `pulumi up --replace URN` (this HostReboot's URN, from `pulumi stack --show-urns`)";

/** The error of a boot that failed verification: just now (`recorded`) or again on a later run. */
export function failedBootMessage(label: string, failed: FailedVerification, when: "now" | "again"): string {
  const boot = failed.bootId === null ? "the reboot" : `boot ${failed.bootId}`;
  const head = failed.trial
    ? `${label}: trial boot ${failed.trial} failed (checked ${failed.at}); the host is on its previous configuration and nothing was made permanent:`
    : when === "now"
      ? `${label} rebooted but ${boot} failed verification:`
      : `${label}: the last boot (id ${failed.bootId ?? "unknown"}) failed verification (checked ${failed.at}):`;
  if (failed.trial) return `${head}\n  ${failed.problems.join("\n  ")}\n${RETRY_TRIAL}`;
  return (
    `${head}\n  ${failed.problems.join("\n  ")}\n` +
    `Not rebooting again without a change: the failure is recorded in the state. Fix the cause (reboot by hand if the fix needs a boot) and ` +
    `run \`pulumi up\` again, which checks the boot it finds; or ${FORCE_REBOOT}.`
  );
}

/** The error of a host that did not answer with a new boot_id in time. */
export function noNewBootMessage(label: string, timeoutSeconds: number, previousBootId: string): string {
  return (
    `${label} did not come back with a new boot_id within ${timeoutSeconds}s (it was boot ${previousBootId}). Check its console and power-cycle it. ` +
    `If it does not boot, pick the previous kernel arguments at the boot menu (GRUB: press e), or boot a rescue system and copy the ` +
    `originals back from ${BACKUP_ROOT}. Once it answers, run \`pulumi up\`: it checks the boot it finds without rebooting again, ` +
    `and converges; or ${FORCE_REBOOT}.`
  );
}

/**
 * A failure the engine records: thrown from create or update with `id`, `properties` and `reasons`,
 * it is stored as the resource's outputs with init errors (grpcResponseFromError in
 * @pulumi/pulumi/cmd/dynamic-provider), and the next up calls update even without a change
 * (pkg/resource/deploy/step_generator.go; proven in test/e2e/initErrors.test.ts).
 */
class RecordedFailure extends Error {
  readonly reasons: string[];
  constructor(
    message: string,
    readonly id: string,
    readonly properties: Record<string, unknown>,
  ) {
    super(message);
    this.reasons = [message];
  }
}

type BootOutcome = { ok: true; observed: BootObservation } | { ok: false; failed: FailedVerification; message: string };

/** Every step that changes the host's boot (stage, reboot, commit, cleanup) runs under the host lock. */
const underHostLock = <T>(inputs: RebootInputs, fn: () => Promise<T>) => withHostLock(inputs.connection, lockOwner(undefined), fn);

/** Reboots the host and waits for it to answer with a new boot_id; undefined when it did not in time. */
async function rebootAndWait(host: RemoteHost, inputs: RebootInputs, before: string): Promise<BootObservation | undefined> {
  const started = Date.now();
  console.error(`${host.label}: rebooting (boot ${before.slice(0, 8)}), waiting up to ${inputs.timeoutSeconds}s`);
  // Under the host lock, so no other run is rewriting the boot files as the host goes down; the
  // lock itself ends with the boot.
  await underHostLock(inputs, () => host.run(["sh", "-c", DETACHED_REBOOT]));
  await failpoint("reboot.issued");
  await host.disconnect();
  const deadline = started + inputs.timeoutSeconds * 1000;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 3_000));
    try {
      // Each attempt waits for SSH no longer than what is left of the reboot's timeout (the
      // connection's own readyTimeoutSeconds would stretch a dead host's wait past it).
      const remaining = Math.max(1, Math.ceil((deadline - Date.now()) / 1000));
      const candidate = await withHost({ ...inputs.connection, readyTimeoutSeconds: remaining }, (h) => observeBoot(h, inputs.expectVfioDevices));
      if (candidate.bootId !== "" && candidate.bootId !== before) {
        console.error(`${host.label}: back after ${Math.round((Date.now() - started) / 1000)}s (boot ${candidate.bootId.slice(0, 8)})`);
        return candidate;
      }
    } catch {
      // Going down or not up yet: drop the connection and try again.
    }
    await host.disconnect();
  }
  return undefined;
}

const currentBootId = async (host: RemoteHost) => (await host.run(["cat", "/proc/sys/kernel/random/boot_id"])).stdout.trim();

async function rebootAndVerify(host: RemoteHost, inputs: RebootInputs): Promise<BootOutcome> {
  const before = await currentBootId(host);
  const observed = await rebootAndWait(host, inputs, before);
  const at = new Date().toISOString();
  if (!observed) {
    const message = noNewBootMessage(host.label, inputs.timeoutSeconds, before);
    return { ok: false, failed: { bootId: null, previousBootId: before, problems: [`no new boot_id within ${inputs.timeoutSeconds}s`], at }, message };
  }
  const problems = verifyBoot(observed, inputs.expectArgs, inputs.expectVfioDevices);
  if (problems.length === 0) return { ok: true, observed };
  const failed = { bootId: observed.bootId, previousBootId: before, problems, at };
  return { ok: false, failed, message: failedBootMessage(host.label, failed, "now") };
}

/**
 * Pure: the trial of these staged files, or undefined when there is nothing to boot. A resource
 * that did not change in this run keeps the staged files of an earlier trial in its state; those
 * already on the host (`applied`) are left out. The image is built when an input of the initramfs
 * changes (the modules list, a dracut drop-in, modprobe.d), or when InitramfsModules found the live
 * image lacking modules.
 */
export function effectiveTrial(staged: readonly StagedFile[], options: NonNullable<RebootInputs["trial"]>, applied: (f: StagedFile) => boolean = () => false): Trial | undefined {
  const files = staged.filter((f) => !applied(f));
  const buildImage = options.buildImage || files.some((f) => isImageInput(f.path));
  if (files.length === 0 && !buildImage) return undefined;
  const { release, options: trialOptions } = options;
  return { id: trialId(files, release, buildImage, trialOptions), files, release, buildImage, options: trialOptions };
}

/** The trial left once the staged files the host already holds are taken out. */
async function trialOnHost(host: RemoteHost, inputs: RebootInputs): Promise<Trial | undefined> {
  const current = new Map(await Promise.all(inputs.staged.map(async (f) => [f.path, await host.readFile(f.path)] as const)));
  return effectiveTrial(inputs.staged, inputs.trial!, (f) => current.get(f.path)?.equals(Buffer.from(f.after)) === true);
}

/** The error of a trial whose boot did not come back as the trial. */
export function trialFellBackMessage(label: string, trial: Trial, bootId: string, log: string): string {
  const watchdog =
    trial.options.watchdogSeconds > 0
      ? `\n  A healthy boot that is slow to answer over SSH ends like this too: raise vfio-host:trialWatchdogSeconds (now ${trial.options.watchdogSeconds}).`
      : "";
  return (
    `${label}: the trial boot failed; the host is back on its previous configuration; nothing was made permanent.\n` +
    `  Trial ${trial.id}: boot ${bootId} came up without ${TRIAL_MARKER_KEY}=${trial.id} on its command line and the boot loader's one-shot was spent ` +
    `(the trial panicked, hung until the watchdog reset it, or was power-cycled).\n  ${log}\n` +
    `  The trial's boot entry and initramfs were removed. ${RETRY_TRIAL}${watchdog}`
  );
}

/** The error of a trial that never answered. */
export function trialNoNewBootMessage(label: string, trial: Trial, timeoutSeconds: number): string {
  return (
    `${label} did not come back within ${timeoutSeconds}s after booting trial ${trial.id}. Power-cycle it: it will boot the previous ` +
    `configuration (the boot loader spent its one-shot starting the trial; if its console shows it still in the firmware or the loader, ` +
    `wait: a power cut before the loader starts the trial boots it once more). Then run \`pulumi up\`: it finds the previous configuration, ` +
    `removes the trial and reports the failure without rebooting.`
  );
}

async function fellBack(host: RemoteHost, inputs: RebootInputs, trial: Trial, record: TrialRecord, observed: BootObservation): Promise<BootOutcome> {
  await underHostLock(inputs, () => cleanupTrials(host));
  const log = await trialBootLog(host, trial.id);
  const failed = { bootId: observed.bootId, previousBootId: record.previousBootId, problems: [`trial ${trial.id} fell back`], at: new Date().toISOString(), trial: trial.id };
  console.error(`${host.label}: trial ${trial.id} fell back to the previous configuration`);
  return { ok: false, failed, message: trialFellBackMessage(host.label, trial, observed.bootId, log) };
}

/** The trial booted: prove it, then make it permanent; a boot that fails the proof is rebooted back. */
async function proveAndCommit(host: RemoteHost, inputs: RebootInputs, loader: TrialLoader, trial: Trial, observed: BootObservation, previousBootId: string): Promise<BootOutcome> {
  const problems = verifyBoot(observed, inputs.expectArgs, inputs.expectVfioDevices);
  if (problems.length === 0) {
    const started = Date.now();
    await underHostLock(inputs, () => commitTrial(host, loader, trial, inputs.expectArgs));
    console.error(`${host.label}: trial ${trial.id} committed in ${Math.round((Date.now() - started) / 1000)}s`);
    return { ok: true, observed };
  }
  // Nothing was committed: with the trial gone, the reboot lands on the previous configuration.
  await underHostLock(inputs, () => cleanupTrials(host));
  const back = await rebootAndWait(host, inputs, observed.bootId);
  const failed = { bootId: observed.bootId, previousBootId, problems, at: new Date().toISOString(), trial: trial.id };
  const where = back ? "it was rebooted back to its previous configuration" : `it was rebooted back, but did not answer within ${inputs.timeoutSeconds}s; power-cycle it`;
  return {
    ok: false,
    failed,
    message:
      `${host.label}: the trial boot came up but failed verification:\n  ${problems.join("\n  ")}\n` +
      `${where}; nothing was made permanent. ${RETRY_TRIAL}`,
  };
}

/**
 * A change booted once as a trial: the boot found now decides where to start (a run cut short
 * after the reboot resumes with the proof; a trial that already fell back is reported, not
 * retried), else the trial is staged and booted.
 */
async function runTrial(host: RemoteHost, inputs: RebootInputs, recorded?: FailedVerification): Promise<BootOutcome> {
  const { loader, unsupported } = await readTrialSupport(host);
  if (loader === undefined) {
    // The boot-time resources decided the same and wrote their files: reboot into them.
    if (inputs.staged.length > 0) throw new Error(`${host.label} can no longer boot a trial (${unsupported}); nothing was changed. Set vfio-host:trialBoot to false to apply without one.`);
    return recorded ? recheck(host, inputs, recorded) : rebootAndVerify(host, inputs);
  }
  const now = await observeBoot(host, inputs.expectVfioDevices);
  const trial = await trialOnHost(host, inputs);
  if (!trial) {
    // Nothing to boot (all staged files are in place, committed by an earlier trial): prove the
    // boot found, and reboot only if it fails (never again after a recorded failure).
    if (recorded) return recheck(host, inputs, recorded);
    return verifyBoot(now, inputs.expectArgs, inputs.expectVfioDevices).length === 0 ? { ok: true, observed: now } : rebootAndVerify(host, inputs);
  }
  const record = await readTrialRecord(host);
  if (bootedTrial(now.cmdline) === trial.id) return proveAndCommit(host, inputs, loader, trial, now, record?.previousBootId ?? now.bootId);
  if (record?.id === trial.id && record.previousBootId !== now.bootId) return fellBack(host, inputs, trial, record, now);
  if (recorded?.trial === trial.id) {
    const again = { ...recorded, at: new Date().toISOString() };
    const stillWaiting = record?.id === trial.id ? ` It is still on boot ${now.bootId} from before the trial: power-cycle it.` : "";
    return { ok: false, failed: again, message: failedBootMessage(host.label, again, "again") + stillWaiting };
  }
  const started = Date.now();
  await underHostLock(inputs, () => stageTrial(host, loader, trial, now.bootId));
  console.error(`${host.label}: trial ${trial.id} staged in ${Math.round((Date.now() - started) / 1000)}s`);
  const observed = await rebootAndWait(host, inputs, now.bootId);
  if (!observed) {
    const failed = { bootId: null, previousBootId: now.bootId, problems: [`no new boot_id within ${inputs.timeoutSeconds}s`], at: new Date().toISOString(), trial: trial.id };
    return { ok: false, failed, message: trialNoNewBootMessage(host.label, trial, inputs.timeoutSeconds) };
  }
  if (bootedTrial(observed.cmdline) === trial.id) return proveAndCommit(host, inputs, loader, trial, observed, now.bootId);
  return fellBack(host, inputs, trial, { id: trial.id, previousBootId: now.bootId }, observed);
}

/** The boot found now, checked against a failure recorded earlier; nothing is rebooted. */
async function recheck(host: RemoteHost, inputs: RebootInputs, failed: FailedVerification): Promise<BootOutcome> {
  const observed = await observeBoot(host, inputs.expectVfioDevices);
  const problems = recheckProblems(failed, observed, inputs.expectArgs, inputs.expectVfioDevices);
  if (problems.length === 0) {
    console.error(`${host.label}: boot ${observed.bootId.slice(0, 8)} passes verification; the failure recorded at ${failed.at} is cleared`);
    return { ok: true, observed };
  }
  const again = { ...failed, bootId: observed.bootId, problems, at: new Date().toISOString() };
  return { ok: false, failed: again, message: failedBootMessage(host.label, again, "again") };
}

const inputKeys = ["connection", "triggers", "expectArgs", "expectVfioDevices", "timeoutSeconds", "staged", "trial"] as const;
// State recorded before trial boots has neither key: that is nothing staged, and trial options
// matter only with something staged. A connection an older version recorded (a renamed key)
// compares as this version reads it.
const comparable = (props: Record<string, unknown>): Record<string, unknown> => {
  const staged = (props.staged as unknown[] | undefined) ?? [];
  return { ...props, connection: comparableConnection(props.connection), staged, trial: staged.length > 0 ? props.trial : undefined };
};
const sameInputs = (a: Record<string, unknown>, b: Record<string, unknown>, keys: readonly string[]) =>
  keys.every((k) => isDeepStrictEqual(comparable(a)[k], comparable(b)[k]));

/** The inputs of a property bag that may also hold this resource's outputs (read, update's olds). */
function inputsOf(props: Record<string, unknown>): RebootInputs {
  const { observed: _o, failedVerification: _f, ...inputs } = props;
  return parseChecked(RebootSchema, inputs);
}

/** create/update's result: the outputs, or a RecordedFailure whose outputs keep the last verified boot. */
function settle(outcome: BootOutcome, id: string, inputs: RebootInputs, props: Record<string, unknown>, lastVerified: unknown): Record<string, unknown> {
  if (outcome.ok) return plainOutputs({ ...inputs, observed: outcome.observed });
  const kept = lastVerified === undefined ? {} : { observed: lastVerified };
  // __provider: the engine needs the serialized provider in the outputs to run delete later.
  throw new RecordedFailure(outcome.message, id, plainOutputs({ ...inputs, ...kept, failedVerification: outcome.failed, __provider: props.__provider }));
}

export const hostRebootProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds, news) {
    return checkInputs(RebootSchema, news);
  },
  async diff(_id, olds, news) {
    // A recorded failure is an update to make even after a refresh (which clears the engine's init
    // errors): the next up looks at the boot again.
    const changes = !sameInputs(olds, news, inputKeys) || olds.failedVerification !== undefined;
    return { changes, replaces: [] };
  },
  async create(props) {
    const inputs = parseChecked(RebootSchema, props);
    const outcome = await withHost(inputs.connection, (host) => (inputs.trial ? runTrial(host, inputs) : rebootAndVerify(host, inputs)));
    const id = `${inputs.connection.host}:${outcome.ok ? outcome.observed.bootId : (outcome.failed.bootId ?? outcome.failed.previousBootId)}`;
    return { id, outs: settle(outcome, id, inputs, props, undefined) };
  },
  async update(id, olds, news) {
    const inputs = parseChecked(RebootSchema, news);
    const decision = decideReboot(olds, news);
    if (decision.kind === "nothing") return { outs: plainOutputs({ ...inputs, observed: olds.observed }) };
    const outcome = await withHost(inputs.connection, (host) =>
      inputs.trial
        ? runTrial(host, inputs, decision.kind === "recheck" ? decision.failed : undefined)
        : decision.kind === "reboot"
          ? rebootAndVerify(host, inputs)
          : recheck(host, inputs, decision.failed),
    );
    return { outs: settle(outcome, id, inputs, news, olds.observed) };
  },
  async read(id, props) {
    const inputs = inputsOf(props);
    const observed = await withHost(inputs.connection, (host) => observeBoot(host, inputs.expectVfioDevices));
    return { id, props: { ...props, observed } };
  },
  async delete(_id, props) {
    // Destroy never reboots a host by itself: the boot-time resources restore the files, and the
    // old configuration takes effect at the next boot the user chooses (see the README). A trial
    // still staged (a run cut short before its reboot) is taken away.
    const inputs = inputsOf(props);
    if (inputs.trial) await withHost(inputs.connection, (host) => underHostLock(inputs, () => cleanupTrials(host)));
  },
};

export interface HostRebootArgs {
  connection: pulumi.Input<ConnectionInput>;
  triggers: pulumi.Input<unknown[]>;
  expectArgs?: pulumi.Input<pulumi.Input<string>[]>;
  expectVfioDevices?: pulumi.Input<pulumi.Input<string>[]>;
  timeoutSeconds?: pulumi.Input<number>;
  staged?: pulumi.Input<z.input<typeof StagedFileSchema>[]>;
  trial?: pulumi.Input<{ release: pulumi.Input<string>; buildImage: pulumi.Input<boolean>; options: z.input<typeof TrialOptionsSchema> }>;
}

export class HostReboot extends KindResource {
  declare readonly observed: pulumi.Output<BootObservation>;
  /** Set while the last boot failed verification; the next up checks the boot again without rebooting. */
  declare readonly failedVerification: pulumi.Output<FailedVerification | undefined>;

  constructor(name: string, args: HostRebootArgs, opts?: pulumi.CustomResourceOptions) {
    super("HostReboot", name, { ...args, observed: undefined, failedVerification: undefined }, {
      ...opts,
      additionalSecretOutputs: ["connection"],
    });
  }
}
