// Which boot loader booted this host, so KernelCmdline edits only what boots (a Proxmox VE ZFS/UEFI
// host has /etc/default/grub, yet boots systemd-boot through proxmox-boot-tool: an edit of the
// former would do nothing). The loader's own word comes first: systemd-boot sets the EFI variable
// LoaderInfo (systemd.io/BOOT_LOADER_INTERFACE); then proxmox-boot-tool's record of its ESPs;
// then the files each loader reads and what the loader put on /proc/cmdline.
import { parseWhitespaceTokens } from "../text/tokenList";
import { shellQuote } from "../ssh/quote";
import { EXTLINUX_CONF_PATH, UPDATE_EXTLINUX_CONF_PATH } from "./extlinux";
import { GRUB_CFG_PATH, GRUB_DEFAULTS_PATH } from "./grub";
import { KERNEL_CMDLINE_PATH } from "./kernelCmdlineFile";
import { SYSLINUX_CONFIG_PATHS } from "./syslinux";

export type BootLoader = "grub" | "systemd-boot" | "proxmox-boot-tool" | "grubby-bls" | "extlinux" | "syslinux" | "unknown";

export interface BootedLoader {
  readonly loader: BootLoader;
  /** What was found on the host and what it says, for preview and for refusals. */
  readonly evidence: readonly string[];
}

/** systemd-boot's vendor GUID for its EFI variables (Boot Loader Interface). */
export const LOADER_GUID = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
const EFI_VARIABLES = ["LoaderInfo", "LoaderEntrySelected"] as const;
const PROXMOX_BOOT_UUIDS = "/etc/kernel/proxmox-boot-uuids";
const GRUB2_CFG_PATH = "/boot/grub2/grub.cfg";

/** Files whose presence says which loaders are installed; which one boots is decided from the rest. */
const TRACES = [
  GRUB_DEFAULTS_PATH,
  GRUB_CFG_PATH,
  GRUB2_CFG_PATH,
  "/boot/grub/grubenv",
  "/boot/grub2/grubenv",
  KERNEL_CMDLINE_PATH,
  PROXMOX_BOOT_UUIDS,
  UPDATE_EXTLINUX_CONF_PATH,
  EXTLINUX_CONF_PATH,
  ...SYSLINUX_CONFIG_PATHS,
  "/boot/loader/entries",
  "/efi/loader/entries",
  "/boot/efi/loader/entries",
];
const COMMANDS = ["bootctl", "kernel-install", "proxmox-boot-tool", "grubby", "update-grub", "grub-mkconfig", "grub2-mkconfig", "update-extlinux", "extlinux"];

/**
 * One read-only snippet for readSections (section name of the caller's choosing): tagged lines,
 * `efi`, `efivars`, `efivar <name> <hex>`, `present <path>`, `command <name>`, `blscfg <path>`,
 * `cmdline <...>`, `proxmox <line>`. EFI variables are printed as hex (4 attribute bytes, then
 * UTF-16LE) and decoded here. `proxmox-boot-tool status` mounts each ESP it manages, inside a
 * private mount namespace it makes for itself (reexec_in_mountns), so the host's mounts are untouched.
 */
export const BOOTED_LOADER_SNIPPET = [
  "[ -d /sys/firmware/efi ] && echo efi",
  '[ -n "$(ls /sys/firmware/efi/efivars 2>/dev/null | head -n 1)" ] && echo efivars',
  `for v in ${EFI_VARIABLES.join(" ")}; do`,
  `  f=/sys/firmware/efi/efivars/$v-${LOADER_GUID}`,
  `  [ -r "$f" ] && printf 'efivar %s %s\\n' "$v" "$(od -An -v -tx1 "$f" | tr -d ' \\n')"`,
  "done",
  `for p in ${TRACES.map((p) => shellQuote(p).toString("utf8")).join(" ")}; do [ -e "$p" ] && echo "present $p"; done`,
  `for c in ${COMMANDS.join(" ")}; do command -v "$c" >/dev/null 2>&1 && echo "command $c"; done`,
  `for f in ${GRUB_CFG_PATH} ${GRUB2_CFG_PATH} /boot/efi/EFI/*/grub.cfg; do [ -f "$f" ] && grep -qE '^[[:space:]]*blscfg' "$f" && echo "blscfg $f"; done`,
  'echo "cmdline $(cat /proc/cmdline)"',
  "if command -v proxmox-boot-tool >/dev/null 2>&1; then proxmox-boot-tool status 2>&1 | sed 's/^/proxmox /'; fi",
].join("\n");

export interface ProxmoxBootToolStatus {
  /** False when /etc/kernel/proxmox-boot-uuids does not exist: proxmox-boot-tool manages no ESP. */
  readonly configured: boolean;
  /** Each ESP it keeps in sync, and what it installed there: "uefi" is systemd-boot, "grub" GRUB. */
  readonly esps: readonly { readonly uuid: string; readonly modes: readonly ("uefi" | "grub")[] }[];
}

export interface BootedLoaderFacts {
  /** /sys/firmware/efi exists: the firmware booted the loader through UEFI. */
  readonly efi: boolean;
  /** The EFI variables can be read (efivarfs mounted), so a missing LoaderInfo means something. */
  readonly efivars: boolean;
  /** systemd-boot's LoaderInfo, e.g. "systemd-boot 252.22-1~deb12u1". */
  readonly loaderInfo?: string;
  /** The entry systemd-boot booted, e.g. "proxmox-6.8.12-4-pve.conf". */
  readonly loaderEntrySelected?: string;
  /** Which of the trace files exist. */
  readonly present: readonly string[];
  readonly commands: readonly string[];
  /** grub.cfg files that run blscfg, i.e. GRUB reading BLS entries (Fedora/RHEL). */
  readonly blscfg: readonly string[];
  readonly procCmdline: string;
  /** Undefined when proxmox-boot-tool is not installed. */
  readonly proxmoxBootTool?: ProxmoxBootToolStatus;
}

/** An EFI variable's bytes: a 4-byte attribute mask, then (for these) a NUL-terminated UTF-16LE string. */
export function decodeEfiString(hex: string): string {
  const text = Buffer.from(hex, "hex").subarray(4).toString("utf16le");
  const nul = text.indexOf("\0");
  return nul < 0 ? text : text.slice(0, nul);
}

/** Reads the output of `proxmox-boot-tool status` (proxmox-kernel-helper, bin/proxmox-boot-tool: status, _status_detail). */
export function parseProxmoxBootToolStatus(output: string): ProxmoxBootToolStatus {
  const esps = [];
  for (const line of output.split("\n")) {
    const match = /^(\S+) is configured with: (.*)$/.exec(line.trim());
    if (!match) continue;
    const modes = (["uefi", "grub"] as const).filter((mode) => new RegExp(`(^|, )${mode} \\(`).test(match[2]));
    esps.push({ uuid: match[1], modes });
  }
  return { configured: !output.includes(`${PROXMOX_BOOT_UUIDS} does not exist`), esps };
}

export function parseBootedLoaderFacts(section: string): BootedLoaderFacts {
  const lines = section.split("\n");
  const tagged = (tag: string) => lines.filter((line) => line.startsWith(`${tag} `)).map((line) => line.slice(tag.length + 1));
  const efivar = (name: string) => {
    const hex = tagged("efivar").find((v) => v.startsWith(`${name} `))?.slice(name.length + 1);
    return hex === undefined ? undefined : decodeEfiString(hex);
  };
  const commands = tagged("command");
  return {
    efi: lines.includes("efi"),
    efivars: lines.includes("efivars"),
    loaderInfo: efivar("LoaderInfo"),
    loaderEntrySelected: efivar("LoaderEntrySelected"),
    present: tagged("present"),
    commands,
    blscfg: tagged("blscfg"),
    procCmdline: tagged("cmdline")[0] ?? "",
    proxmoxBootTool: commands.includes("proxmox-boot-tool") ? parseProxmoxBootToolStatus(tagged("proxmox").join("\n")) : undefined,
  };
}

function grubFamily(facts: BootedLoaderFacts, evidence: string[]): BootedLoader {
  if (facts.blscfg.length > 0) {
    evidence.push(`${facts.blscfg.join(", ")} runs blscfg: GRUB boots the BLS entries in /boot/loader/entries`);
    if (facts.commands.includes("grubby")) evidence.push("grubby is on PATH");
    return { loader: "grubby-bls", evidence };
  }
  return { loader: "grub", evidence };
}

/** extlinux.conf before syslinux.cfg: the order syslinux >= 4.00 looks for them (syslinux.cfg(5), LOCATION/NAME). */
function syslinuxFamily(configs: readonly string[], evidence: string[]): BootedLoader {
  return { loader: configs.some((p) => p.endsWith("extlinux.conf")) ? "extlinux" : "syslinux", evidence };
}

export function detectBootedLoader(facts: BootedLoaderFacts): BootedLoader {
  const evidence: string[] = [facts.efi ? "/sys/firmware/efi exists: the firmware booted through UEFI" : "no /sys/firmware/efi: the firmware booted through BIOS"];
  const has = (path: string) => facts.present.includes(path);
  const pbt = facts.proxmoxBootTool;
  const pbtModes = new Set(pbt?.esps.flatMap((esp) => esp.modes) ?? []);
  if (pbt) {
    evidence.push(
      pbt.esps.length > 0
        ? `proxmox-boot-tool status: ${pbt.esps.map((esp) => `${esp.uuid} with ${esp.modes.join(" and ") || "nothing"}`).join(", ")}`
        : `proxmox-boot-tool status: ${pbt.configured ? "no ESP listed" : `${PROXMOX_BOOT_UUIDS} does not exist, it manages no ESP`}`,
    );
  }
  if (facts.loaderInfo !== undefined) {
    evidence.push(`EFI variable LoaderInfo is "${facts.loaderInfo}"${facts.loaderEntrySelected ? `, LoaderEntrySelected "${facts.loaderEntrySelected}"` : ""}`);
    if (/^systemd-boot\b/.test(facts.loaderInfo)) {
      // proxmox-boot-tool writes the entries on its ESPs from /etc/kernel/cmdline; editing them directly would be undone at its next refresh.
      if (pbtModes.has("uefi") || (has(PROXMOX_BOOT_UUIDS) && facts.commands.includes("proxmox-boot-tool"))) {
        return { loader: "proxmox-boot-tool", evidence };
      }
      return { loader: "systemd-boot", evidence };
    }
    if (/^GRUB\b/i.test(facts.loaderInfo)) return grubFamily(facts, evidence);
    evidence.push("that loader is none this project edits");
    return { loader: "unknown", evidence };
  }
  if (facts.efi) {
    evidence.push(
      facts.efivars
        ? "no LoaderInfo EFI variable: not systemd-boot, which always sets it"
        : "the EFI variables cannot be read (efivarfs not mounted), so systemd-boot cannot be ruled out",
    );
  }
  // Under proxmox-boot-tool with GRUB, update-grub runs proxmox-boot-tool refresh (000_proxmox_boot_header), so GRUB's own backend applies.
  if (pbtModes.has("grub") && !pbtModes.has("uefi")) return grubFamily(facts, evidence);
  const grubCfgs = [GRUB_CFG_PATH, GRUB2_CFG_PATH].filter(has);
  const syslinuxConfigs = [EXTLINUX_CONF_PATH, ...SYSLINUX_CONFIG_PATHS].filter(has);
  const loaderEntries = facts.efi && !facts.efivars && ["/boot/loader/entries", "/efi/loader/entries", "/boot/efi/loader/entries"].some(has);
  if (grubCfgs.length > 0) evidence.push(`GRUB's config exists: ${grubCfgs.join(", ")}`);
  if (syslinuxConfigs.length > 0) evidence.push(`syslinux/extlinux config exists: ${syslinuxConfigs.join(", ")}`);
  const candidates = [grubCfgs.length > 0, syslinuxConfigs.length > 0, loaderEntries].filter(Boolean).length;
  if (candidates === 1 && grubCfgs.length > 0) return grubFamily(facts, evidence);
  if (candidates === 1 && syslinuxConfigs.length > 0) return syslinuxFamily(syslinuxConfigs, evidence);
  if (candidates === 0) {
    evidence.push("no config of GRUB, syslinux/extlinux or systemd-boot found");
    return { loader: "unknown", evidence };
  }
  // Both GRUB and syslinux put BOOT_IMAGE= first on the command line; only syslinux adds initrd=
  // (from its INITRD line, or Unraid's APPEND initrd=), GRUB loads the initrd itself.
  const args = parseWhitespaceTokens(facts.procCmdline).tokens;
  const bootImage = args.some((a) => a.startsWith("BOOT_IMAGE="));
  const initrd = args.some((a) => a.startsWith("initrd="));
  if (!loaderEntries && bootImage) {
    evidence.push(`/proc/cmdline has BOOT_IMAGE=${initrd ? " and initrd=, as syslinux passes them" : " without initrd=, as GRUB passes it"}`);
    return initrd ? syslinuxFamily(syslinuxConfigs, evidence) : grubFamily(facts, evidence);
  }
  evidence.push("the configs of more than one loader exist and nothing says which one booted");
  return { loader: "unknown", evidence };
}

/** Each loader as messages name it. */
export const LOADER_NAMES: Record<Exclude<BootLoader, "unknown">, string> = {
  grub: "GRUB",
  "systemd-boot": "systemd-boot",
  "proxmox-boot-tool": "systemd-boot, whose entries proxmox-boot-tool writes from /etc/kernel/cmdline",
  "grubby-bls": "GRUB reading BLS entries (the ones grubby edits)",
  extlinux: "extlinux",
  syslinux: "syslinux",
};

/** Each KernelCmdline backend, what it edits, and the loaders that boot from that. */
const BACKENDS: Record<string, { edits: string; boots: readonly BootLoader[] }> = {
  grub: { edits: "GRUB's /etc/default/grub", boots: ["grub"] },
  extlinux: { edits: "Alpine's /etc/update-extlinux.conf", boots: ["extlinux"] },
  syslinux: { edits: "the syslinux/extlinux config's APPEND lines", boots: ["syslinux", "extlinux"] },
  "systemd-boot": { edits: "systemd-boot's loader entries and /etc/kernel/cmdline", boots: ["systemd-boot"] },
  "proxmox-boot-tool": { edits: "/etc/kernel/cmdline for proxmox-boot-tool", boots: ["proxmox-boot-tool"] },
  grubby: { edits: "GRUB_CMDLINE_LINUX and the BLS entries in /boot/loader/entries", boots: ["grubby-bls"] },
};

/**
 * The refusal when `configured` (a resolved backend, e.g. "grub") edits what does not boot this
 * host, or undefined when it does or when the loader is unknown (nothing to contradict).
 */
export function checkBackendBoots(configured: string, detected: BootedLoader): string | undefined {
  const backend = BACKENDS[configured];
  if (!backend) throw new Error(`checkBackendBoots: no backend "${configured}"; pass the resolved one (${Object.keys(BACKENDS).join(", ")})`);
  if (detected.loader === "unknown" || backend.boots.includes(detected.loader)) return undefined;
  const fitting = Object.keys(BACKENDS).filter((name) => BACKENDS[name].boots.includes(detected.loader));
  return (
    `backend: "${configured}" (KernelCmdline \`backend\`, vfio-host:bootBackend in a host stack) edits ${backend.edits}, but this host ` +
    `booted through ${LOADER_NAMES[detected.loader]} (${detected.evidence.join("; ")}), so the change would not reach the next boot. ` +
    `Set it to ${fitting.map((name) => `"${name}"`).join(" or ")}`
  );
}
