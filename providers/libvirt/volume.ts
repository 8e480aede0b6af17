import { z } from "zod";
import type { HostStep } from "../hostStep";
import { expected, explain, shown, strictKeys } from "../inputErrors";
import { OWNED_ROOT } from "../hostRecords";
import { findAll, parseXml, type XmlElement } from "../text/xml";
import { diffFields, type FieldRule, IN_PLACE, REPLACE } from "./fieldChanges";
import { absolutePath, libvirtName, normalisePath, volumeName } from "./fieldSchemas";
import type { ExistingPool } from "./pool";
import { virsh } from "./virsh";

// A disk image imported into a dir pool, as the reference host did by hand:
//   xzcat haos_ova-7.5.qcow2.xz > /var/lib/libvirt/images/haos_ova-7.5.qcow2
// Here: fetch (or take a host path), verify the SHA-256 of what was fetched, decompress into a
// hidden file in the pool directory (same filesystem, so the final rename is atomic), check the
// result with qemu-img, rename, and let libvirt rescan the pool. For a guest like HAOS the image is
// its data from the first boot on, so an existing file is overwritten only when the declared image
// changes (source, format or digest), never while a domain uses it unless allowReplaceInUse says
// so, and never before the new image is staged and checked: the old one is then kept beside it as
// .NAME.vfio-host-previous (one generation), which the rename cannot lose. Before the rename the
// stack records on the host that it imported the file (volumeRecordPath): a run killed after the
// rename, before Pulumi recorded the import, finds the file again as its own.

const EXAMPLE_URL = "https://github.com/home-assistant/operating-system/releases/download/7.5/haos_ova-7.5.qcow2.xz";

const url = z
  .string(expected("an http or https URL", `"${EXAMPLE_URL}"`))
  .refine(
    (u) => URL.canParse(u) && ["http:", "https:"].includes(new URL(u).protocol) && !/[\s"'<>\\]/.test(u),
    explain((u: unknown) => `${shown(u)} is not an http or https URL; write for example "${EXAMPLE_URL}"`),
  );

const sourceShape = { url: url.optional(), hostPath: absolutePath("/srv/images/haos_ova-7.5.qcow2.xz").optional() };

const source = z
  .strictObject(sourceShape, strictKeys)
  .refine(
    (s) => (s.url === undefined) !== (s.hostPath === undefined),
    explain(() => `give exactly one of url (fetched with curl on the host) or hostPath, for example { url: "${EXAMPLE_URL}" }`),
  )
  .transform((s): { url: string } | { hostPath: string } => (s.url !== undefined ? { url: s.url } : { hostPath: s.hostPath! }));

const volumeShape = {
  pool: libvirtName('"default"'),
  name: volumeName('"haos_ova-7.5.qcow2"'),
  source,
  /** SHA-256 of the source as fetched (before decompression), as release pages publish it. */
  sha256: z
    .string(expected("a SHA-256 digest", "64 hex digits"))
    .regex(/^[0-9a-f]{64}$/i, expected("a SHA-256 digest (64 hex digits)", '"9b0c...e1" as printed by sha256sum'))
    .transform((h) => h.toLowerCase())
    .optional(),
  /** "auto" decides from the source's suffix: .xz, .gz, anything else is not compressed. */
  compression: z.enum(["auto", "xz", "gz", "none"], expected('"auto", "xz", "gz" or "none"', '"auto"')).default("auto"),
  format: z.enum(["qcow2", "raw"], expected('an image format: "qcow2" or "raw"', '"qcow2"')),
  /** Let a change of source, format or sha256 replace the image while a libvirt domain has it as a disk. */
  allowReplaceInUse: z.boolean(expected("true or false", "true")).default(false),
};

// Whoever can alter plain http traffic can hand the host another image, fetched as root and booted
// as a guest's disk; the digest is what makes http safe.
const HTTP_NEEDS_SHA256 =
  "is plain http without sha256, so anyone on the path can swap the image; use the https URL, " +
  "or give sha256 (64 hex digits, as the release page publishes it) so the download is checked";

/**
 * What an earlier declaration said the file holds, read from the previous inputs the base hands the
 * plan (PreviousInputs). Lenient on purpose: a source that today's rules refuse (plain http without a
 * digest) still says what it was.
 */
export const importedFromSchema = z.object({
  pool: z.string(),
  name: z.string(),
  source,
  format: volumeShape.format,
  sha256: volumeShape.sha256,
});

export const volumeSchema = z.strictObject(volumeShape, strictKeys).superRefine((volume, ctx) => {
  if ("url" in volume.source && new URL(volume.source.url).protocol === "http:" && volume.sha256 === undefined) {
    ctx.addIssue({ code: "custom", path: ["source", "url"], message: `${shown(volume.source.url)} ${HTTP_NEEDS_SHA256}` });
  }
});

export type VolumeInputs = z.input<typeof volumeSchema>;
export type VolumeSpec = z.output<typeof volumeSchema>;

/**
 * The component's assertion that every volume names a declared pool, and that no two volumes
 * are the same file. Returns one message per problem; empty when all is well.
 */
export function checkVolumePools(
  volumes: readonly Pick<VolumeSpec, "name" | "pool">[],
  pools: readonly { readonly name: string }[],
): string[] {
  const declared = pools.map((p) => p.name);
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const volume of volumes) {
    if (!declared.includes(volume.pool)) {
      problems.push(
        `volume ${volume.name}: pool "${volume.pool}" is not declared (declared pools: ${declared.join(", ") || "none"}); ` +
          `set pool to one of them or declare a StoragePool named "${volume.pool}"`,
      );
    }
    const file = `${volume.pool}/${volume.name}`;
    if (seen.has(file)) problems.push(`volume ${volume.name}: declared twice in pool "${volume.pool}"; declare each file once`);
    seen.add(file);
  }
  return problems;
}

/** The compression actually used, "auto" resolved from the source's suffix. */
export function compressionOf(spec: VolumeSpec): "xz" | "gz" | "none" {
  if (spec.compression !== "auto") return spec.compression;
  const name = "url" in spec.source ? new URL(spec.source.url).pathname : spec.source.hostPath;
  return name.endsWith(".xz") ? "xz" : name.endsWith(".gz") ? "gz" : "none";
}

export interface VolumeHostFacts {
  /** The pool named by the volume; undefined when the host has no such pool. */
  readonly pool?: Pick<ExistingPool, "name" | "targetPath" | "state">;
  /** The volume's file already exists in the pool directory. */
  readonly exists: boolean;
}

/** A defined domain and the images its disks read (through backing chains too). */
export interface DomainDisks {
  readonly name: string;
  readonly running: boolean;
  /** Files (`<source file=>`) and pool volumes (`<source pool= volume=>`). */
  readonly sources: readonly ({ readonly file: string } | { readonly pool: string; readonly volume: string })[];
}

/** Every defined domain's disks, or why they could not be read (then nothing may be replaced or deleted). */
export type HostDomains = { readonly readable: true; readonly domains: readonly DomainDisks[] } | { readonly readable: false; readonly reason: string };

function diskSources(disk: XmlElement): DomainDisks["sources"] {
  // A backing store is as much in use as the top image: an overlay reads it on every boot.
  const here = findAll(disk, "source").flatMap((source): DomainDisks["sources"] => {
    const { file, pool, volume } = source.attributes;
    if (file !== undefined) return [{ file: normalisePath(file) }];
    return pool !== undefined && volume !== undefined ? [{ pool, volume }] : [];
  });
  return [...here, ...findAll(disk, "backingStore").flatMap((store) => diskSources(store))];
}

/**
 * The disks of one domain from `virsh dumpxml` (live: a running guest's hot-plugged disks) and
 * `virsh dumpxml --inactive` (what it boots with next).
 */
export function parseDomainDisks(name: string, liveXml: string, inactiveXml: string): DomainDisks {
  const roots = [liveXml, inactiveXml].filter((xml) => xml.trim() !== "").map(parseXml);
  // libvirt gives a running domain an id attribute; a shut-off one has none (or -1).
  const id = roots[0]?.attributes.id;
  return { name, running: id !== undefined && id !== "-1", sources: roots.flatMap((root) => findAll(root, "devices/disk").flatMap(diskSources)) };
}

/**
 * The domains section of the volume's facts: "absent" (no virsh, so no domains), "failed" and
 * virsh's message, or "listed" and then "\0NAME\0LIVE XML\0INACTIVE XML" per domain.
 */
export function parseDomainsSection(section: string): HostDomains {
  const [head, ...records] = section.split("\0");
  const status = head.trim();
  if (status === "absent") return { readable: true, domains: [] };
  if (status !== "listed") {
    const message = status.replace(/^failed\s*/, "").replace(/\s+/g, " ");
    return { readable: false, reason: `virsh list --all failed${message ? `: ${message}` : ""}` };
  }
  const domains: DomainDisks[] = [];
  for (let i = 0; i + 2 < records.length; i += 3) {
    // A domain undefined between the list and its dumpxml prints no XML.
    if (records[i + 1].trim() !== "" || records[i + 2].trim() !== "") domains.push(parseDomainDisks(records[i], records[i + 1], records[i + 2]));
  }
  return { readable: true, domains };
}

/** The domains that have the volume's file as a disk, by pool volume or by path. */
export function domainsUsing(path: string, spec: Pick<VolumeSpec, "pool" | "name">, domains: readonly DomainDisks[]): DomainDisks[] {
  return domains.filter((d) =>
    d.sources.some((s) => ("file" in s ? s.file === normalisePath(path) : s.pool === spec.pool && s.volume === spec.name)),
  );
}

const listDomains = (domains: readonly DomainDisks[]) =>
  `${domains.length === 1 ? "domain" : "domains"} ${domains.map((d) => `${d.name} (${d.running ? "running" : "shut off"})`).join(", ")}`;

export interface VolumeImportPlan {
  /** Where the volume ends up. */
  readonly path: string;
  /** Where the image it replaces is kept; undefined for a first import. */
  readonly previousPath?: string;
  /** Where it is assembled first, beside it. */
  readonly stagingPath: string;
  /** Fetch, verify, decompress into stagingPath. */
  readonly stage: readonly HostStep[];
  /** qemu-img info of stagingPath: give its stdout to parseQemuImgInfo, then to checkStagedImage. */
  readonly inspect: HostStep;
  /** Rename into place and rescan the pool; run only when checkStagedImage found nothing. */
  readonly commit: readonly HostStep[];
  /** Remove the partial files; run when a stage step or the check fails. */
  readonly discard: HostStep;
}

// A HAOS image is ~300 MB compressed and several GB of qcow2: far beyond the SSH layer's default 120 s.
const IMPORT_STEP_TIMEOUT_MS = 60 * 60 * 1000;

/** A command an import runs on the host, and the package that brings it on each system HostPackages knows. */
export interface ImportTool {
  readonly command: string;
  /** What the import runs it for. */
  readonly purpose: string;
  readonly packages: { readonly Debian: string; readonly Alpine: string };
}

// Not in every base system: Alpine's has only busybox's wget and unxz, a minimal Debian neither curl nor xz.
const DOWNLOADER: ImportTool = { command: "curl", purpose: "to download it", packages: { Debian: "curl", Alpine: "curl" } };
const DECOMPRESSORS: Record<"xz" | "gz", ImportTool> = {
  xz: { command: "xz", purpose: "to decompress it", packages: { Debian: "xz-utils", Alpine: "xz" } },
  gz: { command: "gzip", purpose: "to decompress it", packages: { Debian: "gzip", Alpine: "gzip" } },
};

/** The commands the import of this volume runs that a host may lack: its downloader and its decompressor. */
export function importTools(spec: VolumeSpec): ImportTool[] {
  const compression = compressionOf(spec);
  return [...("url" in spec.source ? [DOWNLOADER] : []), ...(compression === "none" ? [] : [DECOMPRESSORS[compression]])];
}

// The script is a constant; paths reach it only as positional parameters, never spliced into it.
const decompressScript = (compression: "xz" | "gz") => `exec ${DECOMPRESSORS[compression].command} -dc -- "$1" > "$2"`;

const noPoolProblem = (spec: VolumeSpec) =>
  `Volume ${spec.name}: there is no pool "${spec.pool}" on the host; declare a StoragePool named "${spec.pool}" and make the volume depend on it`;

function poolDirectory(spec: VolumeSpec, facts: VolumeHostFacts): string {
  const pool = facts.pool;
  if (!pool) throw new Error(noPoolProblem(spec));
  if (pool.targetPath === null) throw new Error(`Volume ${spec.name}: pool "${spec.pool}" has no target directory; use a dir pool`);
  return pool.targetPath;
}

/** The volume's path in its pool. */
export function volumePath(spec: VolumeSpec, facts: VolumeHostFacts): string {
  return `${poolDirectory(spec, facts)}/${spec.name}`;
}

/** Where a re-import keeps the image it replaced, hidden beside it like the staging file. */
export function previousImagePath(spec: VolumeSpec, facts: VolumeHostFacts): string {
  return `${poolDirectory(spec, facts)}/.${spec.name}.vfio-host-previous`;
}

/** What the state recorded as declared before (source, format, digest), compared with now. */
export type ImportedFrom = Pick<VolumeSpec, "source" | "format" | "sha256">;

// The fields that say which bytes the file holds. A digest added to a volume imported without one
// says nothing new about the file (it was not checked then and cannot be now without a download).
const REIMPORTED_ON = ["source", "format", "sha256"];

/** The changes that make the file another image, as "field: from -> to"; empty when it stays. */
export function reimportReasons(previous: ImportedFrom, spec: VolumeSpec): string[] {
  return diffFields(previous, spec, { source: IN_PLACE, format: IN_PLACE, sha256: IN_PLACE }, false)
    .filter((c) => REIMPORTED_ON.includes(c.field) && c.from !== undefined)
    .map((c) => `${c.field} ${describeValue(c.from)} -> ${describeValue(c.to)}`);
}

const describeValue = (value: unknown) =>
  typeof value === "object" && value !== null ? Object.values(value).join("") : String(value);

/**
 * Why the re-import must not happen, or undefined when it may: the image is a disk of a domain
 * (or the domains could not be listed) and the volume does not say allowReplaceInUse.
 */
export function checkReplaceInUse(spec: VolumeSpec, facts: VolumeHostFacts, reasons: readonly string[], domains: HostDomains): string | undefined {
  const path = volumePath(spec, facts);
  const change = `Volume ${spec.name}: ${reasons.join(", ")} imports a new image over ${path}`;
  if (!domains.readable) {
    return `${change}, but the host's libvirt domains could not be listed (${domains.reason}), so it cannot tell whether a guest uses it; make virsh work for the SSH user, then run again`;
  }
  const users = domainsUsing(path, spec, domains.domains);
  if (users.length === 0 || spec.allowReplaceInUse) return undefined;
  return (
    `${change}, but it is a disk of ${listDomains(users)}: the guest's data would be replaced. To do it anyway, set ` +
    `allowReplaceInUse: true on this volume (in a host stack: vfio-host:libvirt volumes[].allowReplaceInUse); the current ` +
    `image is then kept as ${previousImagePath(spec, facts)}, and a running guest keeps writing to that one until it restarts. ` +
    `Otherwise put the volume's ${reasons.map((r) => r.split(" ")[0]).join(" and ")} back, or declare the new image as a volume of its own`
  );
}

/** Why the file must not be deleted, or undefined when it may. */
export function checkDeleteInUse(spec: VolumeSpec, facts: VolumeHostFacts, domains: HostDomains): string | undefined {
  const path = volumePath(spec, facts);
  if (!domains.readable) {
    return `Volume ${spec.name}: not deleting ${path}: the host's libvirt domains could not be listed (${domains.reason}), so it cannot tell whether a guest uses it; make virsh work for the SSH user, then run again`;
  }
  const users = domainsUsing(path, spec, domains.domains);
  if (users.length === 0) return undefined;
  const names = users.map((u) => u.name);
  return (
    `Volume ${spec.name}: not deleting ${path}: it is a disk of ${listDomains(users)}, which this stack does not remove first. ` +
    `Detach it (virsh detach-disk ${names[0]} ${path} --persistent) or undefine ${names.join(", ")}, then run again; ` +
    `or keep the file and drop the Volume from the stack with \`pulumi state delete\` (its URN is in \`pulumi stack --show-urns\`)`
  );
}

/**
 * Something an import needs that the host lacks now but this update may bring first (in a host
 * stack the StoragePool, and HostPackages before it, come before the volume): preview lists
 * `change`; apply, if it is still missing then, fails with `problem` before it touches the host.
 */
export interface ImportBlocker {
  readonly problem: string;
  readonly change: string;
}

const describeSource = (spec: VolumeSpec): string => ("url" in spec.source ? spec.source.url : spec.source.hostPath);

// Where a host stack lists the packages HostPackages installs (stacks/config.ts): in full in the
// error, shorter in the preview line, which `pulumi preview` cuts at 150 characters.
const PACKAGES_KEY = "vfio-host:libvirt.packages.packages";
const PACKAGES_KEY_SHORT = "libvirt.packages";

/** "a", "a and b", "a, b and c". */
const listed = (words: readonly string[]) => (words.length < 2 ? words.join("") : `${words.slice(0, -1).join(", ")} and ${words.at(-1)}`);

/** "xz-utils on Debian, xz on Alpine", "curl on Debian and Alpine". */
function packagesOf(tools: readonly ImportTool[]): string {
  const debian = listed(tools.map((t) => t.packages.Debian));
  const alpine = listed(tools.map((t) => t.packages.Alpine));
  return debian === alpine ? `${debian} on Debian and Alpine` : `${debian} on Debian, ${alpine} on Alpine`;
}

/**
 * What keeps the import from running on the host as it is now: no pool yet, or commands among
 * importTools(spec) that are not `installed` (what `command -v` found). Empty when it can run.
 */
export function importBlockers(spec: VolumeSpec, facts: Pick<VolumeHostFacts, "pool">, installed: readonly string[]): ImportBlocker[] {
  const blockers: ImportBlocker[] = [];
  if (!facts.pool) {
    blockers.push({ problem: noPoolProblem(spec), change: `import ${describeSource(spec)} as ${spec.pool}/${spec.name} once its StoragePool has created pool ${spec.pool}` });
  }
  const missing = importTools(spec).filter((tool) => !installed.includes(tool.command));
  if (missing.length > 0) {
    const [isAre, itThem] = missing.length === 1 ? ["is", "it"] : ["are", "them"];
    const packages = packagesOf(missing);
    blockers.push({
      problem:
        `Volume ${spec.name}: the import of ${describeSource(spec)} needs ${listed(missing.map((t) => `${t.command} (${t.purpose})`))}, ` +
        `which command -v does not find on the host; install ${itThem} (e.g. ${packages}; in a host stack, add ${itThem} to ${PACKAGES_KEY}, ` +
        `which HostPackages installs before the volume), then run again`,
      // The source is named by the line above or by the steps below (download, decompress): not again, so the packages fit.
      change: `import ${spec.pool}/${spec.name} once ${listed(missing.map((t) => t.command))} ${isAre} installed on the host (e.g. ${packages}: add ${itThem} to ${PACKAGES_KEY_SHORT})`,
    });
  }
  return blockers;
}

/**
 * The import: `previous` (what the state says was declared) given and different means the file
 * there is replaced; otherwise an existing file is left as it is and there is nothing to do.
 */
export function planVolumeImport(spec: VolumeSpec, facts: VolumeHostFacts, previous?: ImportedFrom): VolumeImportPlan | undefined {
  const directory = poolDirectory(spec, facts);
  const replacing = facts.exists && previous !== undefined && reimportReasons(previous, spec).length > 0;
  if (facts.exists && !replacing) return undefined;
  const path = `${directory}/${spec.name}`;
  const stagingPath = `${directory}/.${spec.name}.partial`;
  const compression = compressionOf(spec);
  const fromUrl = "url" in spec.source;
  const download = `${directory}/.${spec.name}.download`;
  // Where the source's bytes are before decompression.
  const fetched = "hostPath" in spec.source ? spec.source.hostPath : compression === "none" ? stagingPath : download;

  const stage: HostStep[] = [];
  if ("url" in spec.source) {
    stage.push({
      describe: `download ${spec.source.url}`,
      // An https source is not allowed to be redirected to plain http.
      argv: [
        DOWNLOADER.command, "--fail", "--location", "--silent", "--show-error", "--retry", "3",
        ...(new URL(spec.source.url).protocol === "https:" ? ["--proto-redir", "=https"] : []),
        "--output", fetched, "--url", spec.source.url,
      ],
      timeoutMs: IMPORT_STEP_TIMEOUT_MS,
    });
  }
  if (spec.sha256 !== undefined) {
    stage.push({
      describe: `verify the SHA-256 of ${fetched}`,
      argv: ["sha256sum", "-c", "-"],
      stdin: `${spec.sha256}  ${fetched}\n`,
      timeoutMs: IMPORT_STEP_TIMEOUT_MS,
    });
  }
  if (compression !== "none") {
    stage.push({
      describe: `decompress (${compression}) into ${stagingPath}`,
      argv: ["sh", "-c", decompressScript(compression), "sh", fetched, stagingPath],
      timeoutMs: IMPORT_STEP_TIMEOUT_MS,
    });
    if (fromUrl) stage.push({ describe: `remove the download ${download}`, argv: ["rm", "-f", "--", download] });
  } else if (!fromUrl) {
    stage.push({ describe: `copy ${fetched} into the pool`, argv: ["cp", "--", fetched, stagingPath], timeoutMs: IMPORT_STEP_TIMEOUT_MS });
  }

  const previousPath = replacing ? previousImagePath(spec, facts) : undefined;
  // The image reaches the disk before it takes its name, and the name right after: a power cut
  // soon after the import (the host going down for the boot files' reboot) then finds the whole
  // image or none, never the name over bytes that were still in the page cache (labFaults found one).
  const commit: HostStep[] = [{ describe: `flush ${stagingPath} to disk`, argv: ["sync", "--", stagingPath] }];
  // A hard link keeps the old image under a second name, so the rename below (atomic, same
  // directory) never leaves the volume's path missing or the old bytes unreachable.
  if (previousPath) commit.push({ describe: `keep the current image as ${previousPath}`, argv: ["ln", "-f", "--", path, previousPath] });
  commit.push({ describe: `move the image to ${path}`, argv: ["mv", "-f", "--", stagingPath, path] });
  commit.push({ describe: `flush ${directory} to disk`, argv: ["sync", "--", directory] });
  if (facts.pool?.state === "running") {
    commit.push({ describe: `rescan pool ${spec.pool}`, argv: virsh("pool-refresh", "--pool", spec.pool) });
  }
  return {
    path,
    ...(previousPath ? { previousPath } : {}),
    stagingPath,
    stage,
    inspect: { describe: `inspect ${stagingPath}`, argv: ["qemu-img", "info", "--output=json", "--", stagingPath] },
    commit,
    discard: {
      describe: "remove partial files",
      argv: ["rm", "-f", "--", ...(fromUrl && compression !== "none" ? [download, stagingPath] : [stagingPath])],
    },
  };
}

const qemuImgInfo = z.object({
  "virtual-size": z.number().int().nonnegative(),
  format: z.string(),
  "backing-filename": z.string().optional(),
});

export interface ImageInfo {
  readonly format: string;
  readonly virtualSizeBytes: number;
  readonly backingFile: string | null;
}

/** The fields of `qemu-img info --output=json` we use. */
export function parseQemuImgInfo(stdout: string): ImageInfo {
  const parsed = qemuImgInfo.safeParse(JSON.parse(stdout));
  if (!parsed.success) throw new Error(`qemu-img info printed JSON without a numeric virtual-size and a format: ${shown(stdout)}`);
  const info = parsed.data;
  return { format: info.format, virtualSizeBytes: info["virtual-size"], backingFile: info["backing-filename"] ?? null };
}

/** Why the staged image must not become the volume, or undefined when it may. */
export function checkStagedImage(spec: VolumeSpec, info: ImageInfo): string | undefined {
  // A backing file would make the guest read a host file named by the image itself.
  if (info.backingFile !== null) {
    return (
      `Volume ${spec.name}: the image refers to a backing file (${info.backingFile}); ` +
      `import a standalone image (qemu-img convert -O ${spec.format} IN OUT)`
    );
  }
  if (info.format !== spec.format) {
    return (
      `Volume ${spec.name}: the image is ${info.format} (qemu-img info) but format is "${spec.format}"; ` +
      `write format: "${info.format}" if that is right, or check source and compression`
    );
  }
  return undefined;
}

/** What a Volume exposes: where it is, its format, and the disk size the guest sees. */
export interface VolumeOutputs {
  readonly path: string;
  readonly format: string;
  readonly virtualSizeBytes: number;
}

export function volumeOutputs(path: string, info: ImageInfo): VolumeOutputs {
  return { path, format: info.format, virtualSizeBytes: info.virtualSizeBytes };
}

/** Where the stack that imported the image at `path` records it. */
export const volumeRecordPath = (path: string) => `${OWNED_ROOT}/volume${path}`;

/** `stat -c` of an image: inode, size and mtime, which a file copied over it or put in its place changes. */
export const IMAGE_IDENTITY_FORMAT = "%i %s %Y";

/** The record of an import: the stack (StackOnHost), then the image's identity (IMAGE_IDENTITY_FORMAT). */
export const volumeRecord = (stack: string, identity: string) => `${stack}\n${identity}\n`;

/**
 * Whether `stack` imported the file as it is now: its record names the stack and the file's
 * identity. Without a stack (state recorded before stacks were named) nothing is taken as imported.
 */
export const importRecorded = (record: string | undefined, identity: string | undefined, stack: string | undefined): boolean =>
  stack !== undefined && identity !== undefined && record === volumeRecord(stack, identity);

/** Steps that remove the volume's file (and the image a re-import kept, and the record of its import) and let libvirt forget it. */
export function planVolumeDelete(spec: VolumeSpec, facts: VolumeHostFacts): HostStep[] {
  if (!facts.exists || !facts.pool) return [];
  const path = volumePath(spec, facts);
  const previous = previousImagePath(spec, facts);
  const steps: HostStep[] = [
    { describe: `remove ${path} (and ${previous} if a re-import left one) and the record of its import`, argv: ["rm", "-f", "--", path, previous, volumeRecordPath(path)] },
  ];
  if (facts.pool.state === "running") steps.push({ describe: `rescan pool ${spec.pool}`, argv: virsh("pool-refresh", "--pool", spec.pool) });
  return steps;
}


/**
 * pool and name make another file, so they replace the volume (the old file is deleted, which is
 * refused while a domain has it as a disk). source, format and sha256 say which image the same
 * file holds: an update re-imports it (reimportReasons), guarded by allowReplaceInUse. compression
 * only says how the same source is unpacked, and allowReplaceInUse is a permission: changing them
 * touches nothing on the host.
 */
export const VOLUME_FIELD_RULES: { readonly [K in keyof VolumeSpec]-?: FieldRule } = {
  pool: REPLACE,
  name: REPLACE,
  source: IN_PLACE,
  format: IN_PLACE,
  sha256: IN_PLACE,
  compression: IN_PLACE,
  allowReplaceInUse: IN_PLACE,
};
