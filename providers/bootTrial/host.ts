// Trial boots on GRUB, the host half: stage a trial (its initramfs beside the live one, its menu
// entry in custom.cfg, GRUB's one-shot), make it permanent once its boot was verified, or clean it
// away after a fallback. Nothing here touches a file the previous configuration boots from until the
// commit, so a trial that never comes back leaves the host as it was.
import { failpoint } from "../failpoint";
import { INITRAMFS_TOOLS_MODULES_PATH } from "../initramfsModules/initramfsTools";
import { regenerateAndVerify } from "../kernelCmdline/bootConfig";
import { grubCfgHasArgs, GRUB_DEFAULTS_PATH } from "../kernelCmdline/grub";
import { RemoteHost, sha256Hex } from "../ssh/host";
import { catFile, fileFromSection, readSections } from "../ssh/sections";
import {
  CUSTOM_CFG_PATH,
  firstMenuEntry,
  GRUBENV_PATH,
  renderTrialEntry,
  customCfgWithTrial,
  StagedFile,
  TRIAL_IMAGE_DIR,
  TRIAL_WORK_DIR,
  trialOnlyArgs,
  TrialOptions,
  trialPlanLine,
  trialUnsupported,
} from "./plan";

/** Why this host cannot run trial boots (one round trip), or undefined when it can. */
export async function readTrialUnsupported(host: RemoteHost): Promise<string | undefined> {
  const s = await readSections(host, {
    grubCfg: catFile("/boot/grub/grub.cfg"),
    defaults: `[ -e ${GRUB_DEFAULTS_PATH} ] && echo yes`,
    grubenvSize: `stat -c %s ${GRUBENV_PATH}`,
    bootFs: "grub-probe --target=fs /boot/grub",
    bootAbstraction: "grub-probe --target=abstraction /boot/grub",
    commands: "for c in grub-editenv grub-mkconfig unshare mkinitramfs; do command -v $c >/dev/null && echo $c; done",
  });
  const size = s.grubenvSize.trim();
  return trialUnsupported({
    grubCfg: fileFromSection(s.grubCfg),
    hasDefaultGrub: s.defaults.trim() === "yes",
    grubenvSize: size === "" ? undefined : Number(size),
    bootFs: s.bootFs,
    bootAbstraction: s.bootAbstraction,
    commands: s.commands.split("\n").filter(Boolean),
  });
}

/** Whether a boot-time resource stages its change for a trial boot, and the line its preview adds. */
export interface Staging {
  stage: boolean;
  line?: string;
}

/** Staging for a resource whose stack runs trial boots (`wanted`) on this host; the host decides if it can. */
export async function readStaging(host: RemoteHost, wanted: boolean): Promise<Staging> {
  if (!wanted) return { stage: false };
  const unsupported = await readTrialUnsupported(host);
  return { stage: unsupported === undefined, line: trialPlanLine(unsupported) };
}

/** Pure: a file change as a trial stages it. */
export function stagedFile(path: string, before: string | Buffer | undefined, after: string): StagedFile {
  return { path, beforeSha256: before === undefined ? null : sha256Hex(before), after };
}

/** Everything one trial is made of; its id names it on the host and in /proc/cmdline. */
export interface Trial {
  id: string;
  files: StagedFile[];
  /** The kernel the trial boots (the next kernel, as InitramfsModules found it). */
  release: string;
  /** Build a trial initramfs (the modules list or modprobe.d changes); otherwise the live one boots. */
  buildImage: boolean;
  options: TrialOptions;
}

/** The host's record of a staged trial: which boot asked for it. */
export interface TrialRecord {
  id: string;
  previousBootId: string;
}

const trialDir = (id: string) => `${TRIAL_WORK_DIR}/${id}`;
const trialImage = (release: string) => `${TRIAL_IMAGE_DIR}/initrd.img-${release}`;
const stagedCopy = (id: string, path: string) => `${trialDir(id)}/files${path}`;
const MKINITRAMFS_TIMEOUT_MS = 30 * 60_000;

/** The record of the trial staged on this host, if any. */
export async function readTrialRecord(host: RemoteHost): Promise<TrialRecord | undefined> {
  const s = await readSections(host, { record: `cat ${TRIAL_WORK_DIR}/*/record.json` });
  try {
    const record = JSON.parse(s.record) as TrialRecord;
    return typeof record.id === "string" && typeof record.previousBootId === "string" ? record : undefined;
  } catch {
    return undefined;
  }
}

// The trial initramfs: mkinitramfs reads the copied config directory (with the staged modules
// list) and runs its hooks after it copied /etc/modprobe.d, so this hook puts the staged modprobe.d
// files into the image; the live /etc/modprobe.d, which the previous configuration boots with, stays.
const TRIAL_IMAGE_HOOK = `#!/bin/sh
[ "$1" = prereqs ] && exit 0
dir=$(dirname "$0")/../../files/etc/modprobe.d
[ -d "$dir" ] || exit 0
mkdir -p "$DESTDIR/etc/modprobe.d"
cp "$dir"/*.conf "$DESTDIR/etc/modprobe.d/"
`;

const BUILD_TRIAL_IMAGE = `set -e
dir=$1 release=$2 image=$3
rm -rf "$dir/initramfs-tools"
cp -a /etc/initramfs-tools "$dir/initramfs-tools"
[ -f "$dir/files${INITRAMFS_TOOLS_MODULES_PATH}" ] && cp "$dir/files${INITRAMFS_TOOLS_MODULES_PATH}" "$dir/initramfs-tools/modules"
mkdir -p "$dir/initramfs-tools/hooks" "$(dirname "$image")"
mv "$dir/hook" "$dir/initramfs-tools/hooks/zz-vfio-host-trial"
chmod 755 "$dir/initramfs-tools/hooks/zz-vfio-host-trial"
mkinitramfs -d "$dir/initramfs-tools" -o "$image.new" "$release"
sync -f "$image.new"
mv -f "$image.new" "$image"`;

// The menu update-grub will write from the staged /etc/default/grub, generated without touching
// the live one (a private mount namespace binds the staged copy over it) or the live grub.cfg.
const GENERATE_TRIAL_MENU = `set -e
dir=$1
mkdir -p "$dir/files/etc/default"
[ -f "$dir/files${GRUB_DEFAULTS_PATH}" ] || cp -p ${GRUB_DEFAULTS_PATH} "$dir/files${GRUB_DEFAULTS_PATH}"
unshare -m sh -c 'mount --bind "$1/files${GRUB_DEFAULTS_PATH}" ${GRUB_DEFAULTS_PATH} && grub-mkconfig -o "$1/grub.cfg"' sh "$dir"`;

/** Stages a trial: its files kept in the trial's directory, its initramfs, its menu entry armed (armTrial). */
export async function stageTrial(host: RemoteHost, trial: Trial, previousBootId: string): Promise<void> {
  await cleanupTrials(host);
  const dir = trialDir(trial.id);
  for (const file of trial.files) await host.writeFileAtomic(stagedCopy(trial.id, file.path), file.after);
  if (trial.buildImage) {
    console.error(`${host.label}: building the trial initramfs of ${trial.release} beside the live one (this takes a while)`);
    await host.writeFileAtomic(`${dir}/hook`, TRIAL_IMAGE_HOOK);
    await host.run(["sh", "-c", BUILD_TRIAL_IMAGE, "sh", dir, trial.release, trialImage(trial.release)], { timeoutMs: MKINITRAMFS_TIMEOUT_MS });
  }
  await host.run(["sh", "-c", GENERATE_TRIAL_MENU, "sh", dir], { timeoutMs: 10 * 60_000 });
  const generated = (await host.readFile(`${dir}/grub.cfg`))?.toString("utf8") ?? "";
  const entry = firstMenuEntry(generated);
  if (!entry.some((l) => l.includes(`vmlinuz-${trial.release} `))) {
    throw new Error(`update-grub's first entry would not boot kernel ${trial.release}, the one the initramfs is for:\n${entry.join("\n")}`);
  }
  await armTrial(host, trial, renderTrialEntry(entry, trial.id, trialOnlyArgs(trial.id, trial.options), trial.release, trial.buildImage), previousBootId);
}

/**
 * The trial's entry into custom.cfg (the original saved beside the trial first), GRUB's one-shot
 * pointing at it, and last the record: a trial without one was never armed.
 */
export async function armTrial(host: RemoteHost, trial: Trial, block: string, previousBootId: string): Promise<void> {
  const dir = trialDir(trial.id);
  const custom = await host.readFile(CUSTOM_CFG_PATH);
  // cp -p keeps the original's mode and owner: a custom.cfg holding password hashes is 0600.
  if (custom === undefined) await host.writeFileAtomic(`${dir}/custom.cfg.absent`, "");
  else await host.run(["cp", "-p", CUSTOM_CFG_PATH, `${dir}/custom.cfg.orig`]);
  await host.writeFileAtomic(CUSTOM_CFG_PATH, customCfgWithTrial(custom?.toString("utf8"), block));
  await host.run(["grub-editenv", GRUBENV_PATH, "set", `next_entry=vfio-host-trial-${trial.id}`]);
  await host.writeFileAtomic(`${dir}/record.json`, JSON.stringify({ id: trial.id, previousBootId } satisfies TrialRecord));
  await failpoint("trial.staged");
}

// Puts custom.cfg back from the saved original (or removes it), clears a one-shot we set (GRUB
// leaves `next_entry=` behind when it used it: unset gives the block its bytes back) and removes
// every trial's files and image. Each step can run again.
// A restore that fails stops here, before the saved original is removed with the trial's directory.
const CLEANUP_TRIALS = `set -e
tmp=${CUSTOM_CFG_PATH}.vfio-host-tmp
for dir in ${TRIAL_WORK_DIR}/*/; do
  [ -d "$dir" ] || continue
  if [ -f "$dir/custom.cfg.orig" ]; then
    cp -p "$dir/custom.cfg.orig" "$tmp" && sync -f "$tmp" && mv -f "$tmp" ${CUSTOM_CFG_PATH} || { rm -f "$tmp"; exit 1; }
  elif [ -f "$dir/custom.cfg.absent" ]; then rm -f ${CUSTOM_CFG_PATH}
  fi
done
if grub-editenv ${GRUBENV_PATH} list 2>/dev/null | grep -Eq '^next_entry=(vfio-host-trial-[0-9a-f]+)?$'; then grub-editenv ${GRUBENV_PATH} unset next_entry; fi
rm -rf ${TRIAL_WORK_DIR} ${TRIAL_IMAGE_DIR}
sync`;

/** Removes every trial from the host (entry, one-shot, image, staged files); the live configuration is untouched. */
export async function cleanupTrials(host: RemoteHost): Promise<void> {
  await host.run(["sh", "-c", CLEANUP_TRIALS]);
}

// Stops the softdog the trial armed: write the magic character, then close (nowayout=0).
const DISARM_WATCHDOG = `for w in /sys/class/watchdog/watchdog*; do
  [ "$(cat "$w/identity" 2>/dev/null)" = "Software Watchdog" ] && printf V > "/dev/\${w##*/}"
done; true`;

/** After the trial's boot passed verification: the watchdog stopped, then the staged configuration made permanent. */
export async function commitTrial(host: RemoteHost, trial: Trial, expectArgs: readonly string[]): Promise<void> {
  if (trial.options.watchdogSeconds > 0) await host.run(["sh", "-c", DISARM_WATCHDOG]);
  // A file changed since it was staged is someone else's edit: refuse rather than write over it.
  // One that already holds the staged bytes was written by a commit that was cut short.
  const current = await Promise.all(trial.files.map(async (f) => ({ file: f, bytes: await host.readFile(f.path) })));
  for (const { file, bytes } of current) {
    const sha = bytes === undefined ? null : sha256Hex(bytes);
    if (sha !== file.beforeSha256 && sha !== sha256Hex(file.after)) {
      throw new Error(
        `${host.label}: ${file.path} changed after the trial was staged, so the trial's version is not written over it. ` +
          `The host runs the trial now; its default boot is still the previous configuration. Check the file and run pulumi up again.`,
      );
    }
  }
  // The image first: with the previous command line (the IOMMU off) it boots like the old one.
  if (trial.buildImage) {
    await host.run(["sh", "-c", 'if [ -f "$1" ]; then mv -f "$1" "$2" && sync -f "$2"; fi', "sh", trialImage(trial.release), `/boot/initrd.img-${trial.release}`]);
  }
  await failpoint("trial.commit");
  for (const { file, bytes } of current) {
    if (bytes !== undefined && bytes.equals(Buffer.from(file.after))) continue;
    await host.backupOnce(file.path);
    await host.writeFileAtomic(file.path, file.after);
  }
  console.error(`${host.label}: the trial passed; making it permanent (update-grub)`);
  const failure = await regenerateAndVerify(host, "grub", (files) => grubCfgHasArgs(files.grubCfg ?? "", expectArgs));
  if (failure !== undefined) {
    throw new Error(`${host.label}: the trial boot passed, but making it permanent failed: ${failure}. The host runs the trial; run pulumi up again to finish.`);
  }
  await cleanupTrials(host);
}

/** What the boot before this one logged, when it was the trial: the warnings at its end, or where to look instead. */
export async function trialBootLog(host: RemoteHost, id: string): Promise<string> {
  const s = await readSections(host, {
    cmdline: "journalctl -b -1 -o cat -n 2000 --no-pager | grep -m1 'Command line:'",
    warnings: "journalctl -b -1 -p warning -o short-monotonic -n 20 --no-pager",
  });
  if (!s.cmdline.includes(`vfio_host.trial=${id}`)) {
    return (
      "The trial left no journal (it stopped before the root file system was mounted, in the kernel or the initramfs, " +
      "or the journal is not persistent): read the serial console, or /var/lib/systemd/pstore."
    );
  }
  return `The trial boot's last warnings (journalctl -b -1 -p warning):\n    ${s.warnings.trim().split("\n").join("\n    ")}`;
}
