// Trial boots, the host half: stage a trial (its initramfs beside the live one, its boot entry, the
// loader's one-shot: GRUB's custom.cfg and next_entry, or a systemd-boot loader entry and
// LoaderEntryOneShot), make it permanent once its boot was verified, or clean it away after a
// fallback. Nothing here touches a file the previous configuration boots from until the commit, so
// a trial that never comes back leaves the host as it was.
import { failpoint } from "../failpoint";
import { INITRAMFS_TOOLS_MODULES_PATH } from "../initramfsModules/initramfsTools";
import { backends, ownEntries, regenerateAndVerify } from "../kernelCmdline/bootConfig";
import { BOOTED_LOADER_SNIPPET, detectBootedLoader, LOADER_GUID, parseBootedLoaderFacts } from "../kernelCmdline/bootedLoader";
import { GRUB_DEFAULTS_PATH } from "../kernelCmdline/grub";
import { LOADER_ENTRIES_SNIPPET, parseLoaderEntries, parseLoaderEntry } from "../kernelCmdline/loaderEntries";
import { RemoteHost, sha256Hex } from "../ssh/host";
import { catFile, fileFromSection, readSections } from "../ssh/sections";
import {
  bootctlListsAsDefault,
  CUSTOM_CFG_PATH,
  firstMenuEntry,
  GRUBENV_PATH,
  renderSdbootTrialEntry,
  renderTrialEntry,
  customCfgWithTrial,
  sdbootTrialEntryName,
  sdbootTrialImage,
  StagedFile,
  TRIAL_IMAGE_DIR,
  TRIAL_WORK_DIR,
  TrialLoader,
  trialOnlyArgs,
  TrialOptions,
  trialPlanLine,
  TrialSupport,
  trialSupport,
} from "./plan";

/** Whether this host can run trial boots, and on which loader (one round trip, shared with KernelCmdline's reads). */
export async function readTrialSupport(host: RemoteHost): Promise<TrialSupport> {
  const s = await readSections(host, {
    grubCfg: catFile("/boot/grub/grub.cfg"),
    defaults: `[ -e ${GRUB_DEFAULTS_PATH} ] && echo yes`,
    grubenvSize: `stat -c %s ${GRUBENV_PATH}`,
    bootFs: "grub-probe --target=fs /boot/grub",
    bootAbstraction: "grub-probe --target=abstraction /boot/grub",
    commands: "for c in grub-editenv grub-mkconfig unshare mkinitramfs bootctl dracut; do command -v $c >/dev/null && echo $c; done",
    booted: BOOTED_LOADER_SNIPPET,
    efivars: '[ -n "$(ls /sys/firmware/efi/efivars 2>/dev/null | head -n 1)" ] && echo yes',
    loaderEntries: LOADER_ENTRIES_SNIPPET,
    machineId: "cat /etc/machine-id",
  });
  const size = s.grubenvSize.trim();
  const commands = s.commands.split("\n").filter(Boolean);
  return trialSupport(
    {
      grubCfg: fileFromSection(s.grubCfg),
      hasDefaultGrub: s.defaults.trim() === "yes",
      grubenvSize: size === "" ? undefined : Number(size),
      bootFs: s.bootFs,
      bootAbstraction: s.bootAbstraction,
      commands,
    },
    {
      booted: detectBootedLoader(parseBootedLoaderFacts(s.booted)).loader,
      commands,
      efivars: s.efivars.trim() === "yes",
      entries: ownEntries({ loaderEntries: parseLoaderEntries(s.loaderEntries), machineId: s.machineId.trim() || undefined }),
    },
  );
}

/** Whether a boot-time resource stages its change for a trial boot (on which loader), and the line its preview adds. */
export interface Staging {
  stage: boolean;
  loader?: TrialLoader;
  line?: string;
}

/**
 * Pure: the host's staging as a resource whose files a trial on `loader` stages takes it: the same
 * when it can run that trial or none (preview says why not), nothing when the host's trial is
 * another loader's or the resource's files are never staged.
 */
export function stagingFor(staging: Staging, loader: TrialLoader | undefined): Staging {
  return loader !== undefined && (!staging.stage || staging.loader === loader) ? staging : { stage: false };
}

/** Staging for a resource whose stack runs trial boots (`wanted`) on this host; the host decides if it can. */
export async function readStaging(host: RemoteHost, wanted: boolean): Promise<Staging> {
  if (!wanted) return { stage: false };
  const support = await readTrialSupport(host);
  return { stage: support.loader !== undefined, loader: support.loader, line: trialPlanLine(support) };
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
const grubTrialImage = (release: string) => `${TRIAL_IMAGE_DIR}/initrd.img-${release}`;
const stagedCopy = (id: string, path: string) => `${trialDir(id)}/files${path}`;
const IMAGE_TIMEOUT_MS = 30 * 60_000;

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

// The trial initramfs on GRUB: mkinitramfs reads the copied config directory (with the staged
// modules list) and runs its hooks after it copied /etc/modprobe.d, so this hook puts the staged
// modprobe.d files into the image; the live /etc/modprobe.d, which the previous configuration
// boots with, stays.
const TRIAL_IMAGE_HOOK = `#!/bin/sh
[ "$1" = prereqs ] && exit 0
dir=$(dirname "$0")/../../files/etc/modprobe.d
[ -d "$dir" ] || exit 0
mkdir -p "$DESTDIR/etc/modprobe.d"
cp "$dir"/*.conf "$DESTDIR/etc/modprobe.d/"
`;

const BUILD_MKINITRAMFS_TRIAL_IMAGE = `set -e
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

// The trial initramfs on systemd-boot: dracut reads a copy of /etc/dracut.conf.d with the staged
// drop-in over it (--confdir), and the staged modprobe.d files go in over the live ones
// (--include is copied last), so the live configuration stays what the previous one boots with.
const BUILD_DRACUT_TRIAL_IMAGE = `set -e
dir=$1 release=$2 image=$3
rm -rf "$dir/dracut.conf.d"
mkdir -p "$dir/dracut.conf.d" "$(dirname "$image")"
[ -d /etc/dracut.conf.d ] && cp -a /etc/dracut.conf.d/. "$dir/dracut.conf.d/"
[ -d "$dir/files/etc/dracut.conf.d" ] && cp -a "$dir/files/etc/dracut.conf.d/." "$dir/dracut.conf.d/"
set --
for f in "$dir"/files/etc/modprobe.d/*.conf; do
  [ -f "$f" ] && set -- "$@" --include "$f" "/etc/modprobe.d/\${f##*/}"
done
dracut --quiet --force --confdir "$dir/dracut.conf.d" --kver "$release" "$@" "$image.new"
sync -f "$image.new"
mv -f "$image.new" "$image"`;

// The menu update-grub will write from the staged /etc/default/grub, generated without touching
// the live one (a private mount namespace binds the staged copy over it) or the live grub.cfg.
const GENERATE_TRIAL_MENU = `set -e
dir=$1
mkdir -p "$dir/files/etc/default"
[ -f "$dir/files${GRUB_DEFAULTS_PATH}" ] || cp -p ${GRUB_DEFAULTS_PATH} "$dir/files${GRUB_DEFAULTS_PATH}"
unshare -m sh -c 'mount --bind "$1/files${GRUB_DEFAULTS_PATH}" ${GRUB_DEFAULTS_PATH} && grub-mkconfig -o "$1/grub.cfg"' sh "$dir"`;

async function buildTrialImage(host: RemoteHost, trial: Trial, script: string, image: string): Promise<void> {
  console.error(`${host.label}: building the trial initramfs of ${trial.release} beside the live one (this takes a while)`);
  await host.run(["sh", "-c", script, "sh", trialDir(trial.id), trial.release, image], { timeoutMs: IMAGE_TIMEOUT_MS });
}

/** Stages a trial: its files kept in the trial's directory, its initramfs, its boot entry, the loader's one-shot armed. */
export async function stageTrial(host: RemoteHost, loader: TrialLoader, trial: Trial, previousBootId: string): Promise<void> {
  await cleanupTrials(host);
  for (const file of trial.files) await host.writeFileAtomic(stagedCopy(trial.id, file.path), file.after);
  if (loader === "grub") await stageGrubTrial(host, trial, previousBootId);
  else await stageSdbootTrial(host, trial, previousBootId);
}

async function stageGrubTrial(host: RemoteHost, trial: Trial, previousBootId: string): Promise<void> {
  const dir = trialDir(trial.id);
  if (trial.buildImage) {
    await host.writeFileAtomic(`${dir}/hook`, TRIAL_IMAGE_HOOK);
    await buildTrialImage(host, trial, BUILD_MKINITRAMFS_TRIAL_IMAGE, grubTrialImage(trial.release));
  }
  await host.run(["sh", "-c", GENERATE_TRIAL_MENU, "sh", dir], { timeoutMs: 10 * 60_000 });
  const generated = (await host.readFile(`${dir}/grub.cfg`))?.toString("utf8") ?? "";
  const entry = firstMenuEntry(generated);
  if (!entry.some((l) => l.includes(`vmlinuz-${trial.release} `))) {
    throw new Error(`update-grub's first entry would not boot kernel ${trial.release}, the one the initramfs is for:\n${entry.join("\n")}`);
  }
  await armGrubTrial(host, trial, renderTrialEntry(entry, trial.id, trialOnlyArgs(trial.id, trial.options), trial.release, trial.buildImage), previousBootId);
}

/**
 * The trial's entry into custom.cfg (the original saved beside the trial first), GRUB's one-shot
 * pointing at it, and last the record: a trial without one was never armed.
 */
export async function armGrubTrial(host: RemoteHost, trial: Trial, block: string, previousBootId: string): Promise<void> {
  const dir = trialDir(trial.id);
  const custom = await host.readFile(CUSTOM_CFG_PATH);
  // cp -p keeps the original's mode and owner: a custom.cfg holding password hashes is 0600.
  if (custom === undefined) await host.writeFileAtomic(`${dir}/custom.cfg.absent`, "");
  else await host.run(["cp", "-p", CUSTOM_CFG_PATH, `${dir}/custom.cfg.orig`]);
  await host.writeFileAtomic(CUSTOM_CFG_PATH, customCfgWithTrial(custom?.toString("utf8"), block));
  await host.run(["grub-editenv", GRUBENV_PATH, "set", `next_entry=vfio-host-trial-${trial.id}`]);
  await writeRecord(host, trial, previousBootId);
}

async function writeRecord(host: RemoteHost, trial: Trial, previousBootId: string): Promise<void> {
  await host.writeFileAtomic(`${trialDir(trial.id)}/record.json`, JSON.stringify({ id: trial.id, previousBootId } satisfies TrialRecord));
  await failpoint("trial.staged");
}

/** This installation's loader entry for `release`, the staged text the commit will give it, and the ESP it is on. */
async function readReleaseEntry(host: RemoteHost, trial: Trial): Promise<{ path: string; text: string; esp: string }> {
  const s = await readSections(host, { loaderEntries: LOADER_ENTRIES_SNIPPET, machineId: "cat /etc/machine-id" });
  const entries = ownEntries({ loaderEntries: parseLoaderEntries(s.loaderEntries), machineId: s.machineId.trim() || undefined });
  const entry = entries.find((e) => parseLoaderEntry(e.text).version === trial.release);
  if (!entry) {
    throw new Error(
      `systemd-boot has no loader entry of this installation for kernel ${trial.release} (loader/entries/*.conf with "version ${trial.release}"); ` +
        `run kernel-install add ${trial.release} /boot/vmlinuz-${trial.release}, then pulumi up again`,
    );
  }
  const staged = trial.files.find((f) => f.path === entry.path);
  return { path: entry.path, text: staged?.after ?? entry.text, esp: entry.path.replace(/\/loader\/entries\/[^/]+$/, "") };
}

/**
 * The trial's image on the ESP, its loader entry beside the others (checked not to be the default
 * before it is armed: systemd-boot would boot it every time), then LoaderEntryOneShot pointing at
 * it and the record.
 */
async function stageSdbootTrial(host: RemoteHost, trial: Trial, previousBootId: string): Promise<void> {
  const entry = await readReleaseEntry(host, trial);
  if (trial.buildImage) await buildTrialImage(host, trial, BUILD_DRACUT_TRIAL_IMAGE, `${entry.esp}${sdbootTrialImage(trial.release)}`);
  const name = sdbootTrialEntryName(trial.id);
  const text = renderSdbootTrialEntry(entry.text, trial.id, trialOnlyArgs(trial.id, trial.options), trial.buildImage ? sdbootTrialImage(trial.release) : undefined);
  await host.writeFileAtomic(`${entry.esp}/loader/entries/${name}`, text);
  const list = await host.run(["bootctl", "list", "--no-pager"]);
  if (bootctlListsAsDefault(list.stdout, name)) {
    await cleanupTrials(host);
    throw new Error(
      `${host.label}: systemd-boot would boot the trial's entry ${name} by default, not once (bootctl list marks it so; check loader.conf's default and ` +
        "`bootctl set-default`); the trial was removed and nothing was changed. Set vfio-host:trialBoot to false to apply without a trial.",
    );
  }
  await host.run(["bootctl", "set-oneshot", name]);
  await writeRecord(host, trial, previousBootId);
}

// Puts custom.cfg back from the saved original (or removes it), clears a one-shot we set (GRUB
// leaves `next_entry=` behind when it used it: unset gives the block its bytes back; systemd-boot
// removes LoaderEntryOneShot as it boots it) and removes every trial's files, entries and images.
// Each step can run again. A restore that fails stops here, before the saved original is removed
// with the trial's directory.
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
oneshot=/sys/firmware/efi/efivars/LoaderEntryOneShot-${LOADER_GUID}
if [ -r "$oneshot" ] && tail -c +5 "$oneshot" | tr -d '\\000' | grep -Eq '^vfio-host-trial-[0-9a-f]+\\.conf$'; then bootctl set-oneshot ''; fi
for esp in $(bootctl --print-esp-path 2>/dev/null) /efi /boot /boot/efi; do
  rm -f "$esp"/loader/entries/vfio-host-trial-*.conf
  rm -rf "$esp/vfio-host-trial"
done
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

// The trial's image over each live copy that exists (Debian keeps /boot's, which kernel-install
// copies into the entry, and the entry's on the ESP), each through a copy beside it and a rename.
const INSTALL_TRIAL_IMAGE = `set -e
image=$1; shift
[ -f "$image" ] || exit 0
for live in "$@"; do
  [ -f "$live" ] || continue
  cp "$image" "$live.vfio-host-tmp" && sync -f "$live.vfio-host-tmp" && mv -f "$live.vfio-host-tmp" "$live"
done
sync`;

/** Moves the trial's image over the live one(s), before the files: with the previous command line it boots like the old one. */
async function commitImage(host: RemoteHost, loader: TrialLoader, trial: Trial): Promise<void> {
  if (loader === "grub") {
    await host.run(["sh", "-c", 'if [ -f "$1" ]; then mv -f "$1" "$2" && sync -f "$2"; fi', "sh", grubTrialImage(trial.release), `/boot/initrd.img-${trial.release}`]);
    return;
  }
  const entry = await readReleaseEntry(host, trial);
  const live = parseLoaderEntry((await host.readFile(entry.path))?.toString("utf8") ?? "").initrd.at(-1);
  const copies = [`/boot/initrd.img-${trial.release}`, `/boot/initramfs-${trial.release}.img`, ...(live ? [`${entry.esp}${live}`] : [])];
  await host.run(["sh", "-c", INSTALL_TRIAL_IMAGE, "sh", `${entry.esp}${sdbootTrialImage(trial.release)}`, ...copies]);
}

/** After the trial's boot passed verification: the watchdog stopped, then the staged configuration made permanent. */
export async function commitTrial(host: RemoteHost, loader: TrialLoader, trial: Trial, expectArgs: readonly string[]): Promise<void> {
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
  if (trial.buildImage) await commitImage(host, loader, trial);
  await failpoint("trial.commit");
  for (const { file, bytes } of current) {
    if (bytes !== undefined && bytes.equals(Buffer.from(file.after))) continue;
    await host.backupOnce(file.path);
    await host.writeFileAtomic(file.path, file.after);
  }
  // GRUB's menu is generated (update-grub); systemd-boot reads the entries just written.
  const backend = backends[loader];
  console.error(`${host.label}: the trial passed; making it permanent${backend.regenerate ? ` (${backend.regenerate.name})` : ""}`);
  const failure = await regenerateAndVerify(host, loader, (files) => backend.verify(files, expectArgs, []));
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
