// Arch's mkinitcpio: MODULES=(...) in /etc/mkinitcpio.conf, a bash array of modules put in the image
// and loaded before any boot hook runs (mkinitcpio.conf(5)). Since v36 mkinitcpio also reads
// /etc/mkinitcpio.conf.d/*.conf, appended to mkinitcpio.conf in version order and sourced with it,
// so a drop-in of our own can add to the array without touching the user's file; but only while no
// preset names a config file: `-c`, which a preset's *_config= turns into, skips the drop-ins, and
// presets written before v36 set ALL_config="/etc/mkinitcpio.conf" (mkinitcpio.d/hook.preset at v35).
// /etc/modprobe.d goes into the image through the `modconf` hook.
import { normalizeModuleName, VfioModule } from "../kernel/modules";
import { TokenOwnership, TokenPlan, TokenSyntax, parseWhitespaceTokens, planTokens, revertTokenText } from "../text/tokenList";

export const MKINITCPIO_CONF_PATH = "/etc/mkinitcpio.conf";
export const MKINITCPIO_DROP_IN_PATH = "/etc/mkinitcpio.conf.d/90-vfio-host.conf";
/** Builds every preset's images: each installed kernel boots with the modules, whichever the loader picks. */
export const MKINITCPIO_REBUILD = ["mkinitcpio", "-P"] as const;
const FIRST_DROP_IN_VERSION = 36;

/**
 * Facts: the version, the presets' *_config= lines, and the configuration as mkinitcpio sources it
 * (mkinitcpio.conf followed by the drop-ins in version order; for mkinitcpioHooksProblem). The files
 * a plan edits are read with catFile, which tells an absent file from an empty one.
 */
export const MKINITCPIO_SECTIONS = {
  mkinitcpioVersion: "mkinitcpio --version 2>/dev/null | head -n 3",
  mkinitcpioPresets: `grep -H '^[[:space:]]*[A-Za-z_]*_config=' /etc/mkinitcpio.d/*.preset`,
  mkinitcpioConfig: `cat ${MKINITCPIO_CONF_PATH}
for f in $(cd /etc/mkinitcpio.conf.d 2>/dev/null && ls | grep '\\.conf$' | LC_ALL=C sort -V); do cat "/etc/mkinitcpio.conf.d/$f"; done`,
} as const;
type MkinitcpioSection = keyof typeof MKINITCPIO_SECTIONS;

const SECTION_MARK = "@vfio-host ";
/**
 * MKINITCPIO_SECTIONS as InitramfsModules' bootSection, each after a line of its own name; the
 * configuration (files anyone writes) comes last, so nothing in it can end an earlier section.
 */
export const MKINITCPIO_BOOT_SECTION = Object.entries(MKINITCPIO_SECTIONS)
  .map(([name, snippet]) => `printf '\\n%s\\n' '${SECTION_MARK}${name}'\n${snippet}`)
  .join("\n");

/** Pure: MKINITCPIO_BOOT_SECTION's output, section by section ("" for one it did not print). */
export function parseMkinitcpioBoot(output: string): Record<MkinitcpioSection, string> {
  const names = Object.keys(MKINITCPIO_SECTIONS) as MkinitcpioSection[];
  // A mark's first occurrence is the real one: only the last section prints text mkinitcpio and grep did not write.
  const starts = names.map((name) => {
    const mark = `\n${SECTION_MARK}${name}\n`;
    const at = output.indexOf(mark);
    return at < 0 ? undefined : { at, from: at + mark.length };
  });
  return Object.fromEntries(
    names.map((name, i) => {
      const start = starts[i];
      const next = starts.slice(i + 1).find((s) => s !== undefined);
      return [name, start ? output.slice(start.from, next?.at ?? output.length) : ""];
    }),
  ) as Record<MkinitcpioSection, string>;
}

/**
 * The image of `$release`: its package (Arch writes it to /lib/modules/<release>/pkgbase) names the
 * preset, whose default_image (or default_uki) is what boots; /boot/initramfs-<pkgbase>.img is the
 * stock default_image. lsinitcpio prints one path per line, which missingFromInitramfs reads.
 */
export const MKINITCPIO_LISTING = `[ -r "/lib/modules/$release/pkgbase" ] || exit 0
read -r pkgbase < "/lib/modules/$release/pkgbase"
image=$(sed -n "s/^[[:space:]]*default_\\(image\\|uki\\)=[\\"']\\{0,1\\}\\([^\\"']*\\).*/\\2/p" "/etc/mkinitcpio.d/$pkgbase.preset" 2>/dev/null | head -n 1)
[ -n "$image" ] || image="/boot/initramfs-$pkgbase.img"
lsinitcpio "$image"`;

/** The version `mkinitcpio --version` prints (`mkinitcpio "39.2"`), its major number; undefined when absent. */
export function parseMkinitcpioVersion(text: string): number | undefined {
  const match = /mkinitcpio\s+"?v?(\d+)/.exec(text);
  return match ? Number(match[1]) : undefined;
}

/**
 * Why the drop-in would not be read, or undefined when it would: mkinitcpio before v36, or a preset
 * that names a config file. `presets` is grep -H's `<file>:<line>` output of *_config= lines.
 */
export function dropInUnreadReason(version: number | undefined, presets: string): string | undefined {
  if (version === undefined) return "mkinitcpio is not installed";
  if (version < FIRST_DROP_IN_VERSION) return `mkinitcpio ${version} reads no /etc/mkinitcpio.conf.d (v${FIRST_DROP_IN_VERSION} added it)`;
  const naming = presets
    .split("\n")
    .map((line) => /^([^:]+):\s*([A-Za-z_]+_config)=/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null);
  if (naming.length === 0) return undefined;
  return (
    `${naming.map((m) => `${m[1]} sets ${m[2]}=`).join(", ")}, so \`mkinitcpio -P\` passes -c and skips /etc/mkinitcpio.conf.d; ` +
    `comment ${naming.length === 1 ? "it" : "them"} out (stock presets since mkinitcpio 36 do) to let vfio-host keep its modules in a file of its own`
  );
}

const HEADER = "# Managed by vfio-host (Pulumi InitramfsModules); changes here are overwritten.\n";

/** The drop-in: appends the loadable VFIO modules, in load order, to whatever MODULES the other files set. */
export function renderMkinitcpioDropIn(modules: readonly VfioModule[]): string {
  return `${HEADER}MODULES+=(${modules.filter((m) => !m.builtin).map((m) => m.name).join(" ")})\n`;
}

/** An assignment `NAME=(...)` or `NAME+=(...)` at the start of a line, and where its words are. */
interface ArrayAssignment {
  readonly append: boolean;
  /** Offsets of the text between the parentheses. */
  readonly start: number;
  readonly end: number;
}

/**
 * Every top-level `name=(...)` and `name+=(...)` of a bash file such as mkinitcpio.conf, in order.
 * Only plain words are understood: an array holding a quote, `$`, a backquote or a comment is
 * refused rather than guessed at, as shellVariable.ts refuses values the shell computes.
 */
export function findArrayAssignments(text: string, name: string, source: string): ArrayAssignment[] {
  const found: ArrayAssignment[] = [];
  const opening = new RegExp(`^[ \\t]*${name}(\\+?)=\\(`, "gm");
  for (let match = opening.exec(text); match; match = opening.exec(text)) {
    const start = match.index + match[0].length;
    const end = text.indexOf(")", start);
    const words = text.slice(start, end < 0 ? text.length : end);
    const line = text.slice(0, match.index).split("\n").length;
    if (end < 0 || /["'`$#\\(]/.test(words)) {
      throw new Error(
        `${source} line ${line}: ${name}=(...) ${end < 0 ? "never ends" : "holds quotes, expansions or comments"}, which vfio-host does not edit; ` +
          `write the module names as plain words, e.g. ${name}=(vfio_pci nvme)`,
      );
    }
    found.push({ append: match[1] === "+", start, end });
  }
  return found;
}

/** The array's value for bash after the whole text ran: the last plain assignment and every append after it. */
export function bashArrayValue(text: string, name: string, source: string): string[] | undefined {
  const assignments = findArrayAssignments(text, name, source);
  const last = assignments.map((a) => a.append).lastIndexOf(false);
  if (last < 0 && assignments.length === 0) return undefined;
  return assignments.slice(Math.max(last, 0)).flatMap((a) => parseWhitespaceTokens(text.slice(a.start, a.end)).tokens);
}

/** MODULES words: a name in either spelling, optionally with mkinitcpio's `?` (no error when missing). */
const modulesWordSyntax: TokenSyntax = {
  parse: parseWhitespaceTokens,
  separator: " ",
  key: (word) => normalizeModuleName(word.replace(/\?$/, "")),
  satisfies: () => true,
  end: (list) => list.tokens.length,
};

/** The last plain MODULES=(...) of mkinitcpio.conf: later appends add to it, earlier ones are overwritten. */
function modulesArray(text: string): ArrayAssignment {
  const plain = findArrayAssignments(text, "MODULES", MKINITCPIO_CONF_PATH).filter((a) => !a.append);
  const last = plain.at(-1);
  if (!last) {
    throw new Error(`${MKINITCPIO_CONF_PATH} has no MODULES=(...) line to add the VFIO modules to; put back the stock line MODULES=()`);
  }
  return last;
}

const replaceWords = (text: string, at: ArrayAssignment, words: string) => text.slice(0, at.start) + words + text.slice(at.end);

export interface MkinitcpioModulesRequest {
  readonly text: string;
  /** Module names as the kernel spells them. */
  readonly modules: readonly string[];
  readonly previouslyOwned?: TokenOwnership;
  /** Without previouslyOwned: mkinitcpio.conf as vfio-host saved it before its first edit. */
  readonly backup?: string;
}

/**
 * Where the drop-in is not read: the modules added to MODULES=(...) of mkinitcpio.conf, word
 * ownership kept as initramfsTools.ts keeps lines, so a revert takes back exactly what was added.
 */
export function planMkinitcpioModules(request: MkinitcpioModulesRequest): TokenPlan {
  const at = modulesArray(request.text);
  let backup: string | undefined;
  if (request.backup !== undefined) {
    try {
      const original = modulesArray(request.backup);
      backup = request.backup.slice(original.start, original.end);
    } catch {
      backup = undefined; // a backup without a readable MODULES explains nothing; the file itself was checked above
    }
  }
  const plan = planTokens(
    request.text.slice(at.start, at.end),
    { ensure: request.modules, previouslyOwned: request.previouslyOwned, backup },
    modulesWordSyntax,
  );
  return { ...plan, text: replaceWords(request.text, at, plan.text) };
}

export function revertMkinitcpioModules(text: string, owned: TokenOwnership): string {
  const at = modulesArray(text);
  return replaceWords(text, at, revertTokenText(text.slice(at.start, at.end), owned, modulesWordSyntax));
}

/**
 * Without the `modconf` hook /etc/modprobe.d stays out of the image, and vfio-pci would load there
 * without its ids=; `config` is MKINITCPIO_SECTIONS.mkinitcpioConfig's output.
 */
export function mkinitcpioHooksProblem(config: string): string | undefined {
  const hooks = bashArrayValue(config, "HOOKS", MKINITCPIO_CONF_PATH);
  if (hooks === undefined || hooks.includes("modconf")) return undefined;
  return (
    `HOOKS=(${hooks.join(" ")}) in ${MKINITCPIO_CONF_PATH} lacks modconf, so /etc/modprobe.d (vfio-pci's ids= and softdeps) ` +
    "stays out of the image and vfio-pci would claim nothing at boot; add modconf after udev or systemd, as the stock HOOKS have it"
  );
}
