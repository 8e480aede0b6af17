import { z } from "zod";
import { absolutePath, libvirtName, volumeName } from "./fieldSchemas";
import { diffFields, virsh, type FieldChange, type FieldRule, type HostStep, IN_PLACE, REPLACE } from "./hostStep";
import { expected, explain, shown, strictKeys } from "./inputErrors";
import type { ExistingPool } from "./pool";

// A disk image imported into a dir pool, as the reference host did by hand:
//   xzcat haos_ova-7.5.qcow2.xz > /var/lib/libvirt/images/haos_ova-7.5.qcow2
// Here: fetch (or take a host path), verify the SHA-256 of what was fetched, decompress into a
// hidden file in the pool directory (same filesystem, so the final rename is atomic), check the
// result with qemu-img, rename, and let libvirt rescan the pool. An existing file is never
// overwritten: for a guest like HAOS the image is its data from the first boot on.

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
};

export const volumeSchema = z.strictObject(volumeShape, strictKeys);

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

export interface VolumeImportPlan {
  /** Where the volume ends up. */
  readonly path: string;
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

// The script is a constant; paths reach it only as positional parameters, never spliced into it.
const DECOMPRESS: Record<"xz" | "gz", string> = {
  xz: 'exec xz -dc -- "$1" > "$2"',
  gz: 'exec gzip -dc -- "$1" > "$2"',
};

function poolDirectory(spec: VolumeSpec, facts: VolumeHostFacts): string {
  const pool = facts.pool;
  if (!pool) {
    throw new Error(`Volume ${spec.name}: there is no pool "${spec.pool}" on the host; declare a StoragePool named "${spec.pool}" and make the volume depend on it`);
  }
  if (pool.targetPath === null) throw new Error(`Volume ${spec.name}: pool "${spec.pool}" has no target directory; use a dir pool`);
  return pool.targetPath;
}

/** The volume's path in its pool. */
export function volumePath(spec: VolumeSpec, facts: VolumeHostFacts): string {
  return `${poolDirectory(spec, facts)}/${spec.name}`;
}

/** The import, or undefined when the file is already there (it is never overwritten). */
export function planVolumeImport(spec: VolumeSpec, facts: VolumeHostFacts): VolumeImportPlan | undefined {
  const directory = poolDirectory(spec, facts);
  if (facts.exists) return undefined;
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
      argv: ["curl", "--fail", "--location", "--silent", "--show-error", "--retry", "3", "--output", fetched, "--url", spec.source.url],
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
      argv: ["sh", "-c", DECOMPRESS[compression], "sh", fetched, stagingPath],
      timeoutMs: IMPORT_STEP_TIMEOUT_MS,
    });
    if (fromUrl) stage.push({ describe: `remove the download ${download}`, argv: ["rm", "-f", "--", download] });
  } else if (!fromUrl) {
    stage.push({ describe: `copy ${fetched} into the pool`, argv: ["cp", "--", fetched, stagingPath], timeoutMs: IMPORT_STEP_TIMEOUT_MS });
  }

  const commit: HostStep[] = [{ describe: `move the image to ${path}`, argv: ["mv", "-f", "--", stagingPath, path] }];
  if (facts.pool?.state === "running") {
    commit.push({ describe: `rescan pool ${spec.pool}`, argv: virsh("pool-refresh", "--pool", spec.pool) });
  }
  return {
    path,
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

/** Steps that remove the volume's file and let libvirt forget it. */
export function planVolumeDelete(spec: VolumeSpec, facts: VolumeHostFacts): HostStep[] {
  if (!facts.exists || !facts.pool) return [];
  const path = volumePath(spec, facts);
  const steps: HostStep[] = [{ describe: `remove ${path}`, argv: ["rm", "-f", "--", path] }];
  if (facts.pool.state === "running") steps.push({ describe: `rescan pool ${spec.pool}`, argv: virsh("pool-refresh", "--pool", spec.pool) });
  return steps;
}


/**
 * pool, name, source and format make another file, so they replace the volume (its data with it:
 * mark a guest's only disk `protect: true`). sha256 and compression only say how the same source
 * is checked and unpacked, so changing them touches nothing on the host.
 */
export const VOLUME_FIELD_RULES: { readonly [K in keyof VolumeSpec]-?: FieldRule } = {
  pool: REPLACE,
  name: REPLACE,
  source: REPLACE,
  format: REPLACE,
  sha256: IN_PLACE,
  compression: IN_PLACE,
};

/** Changes between the inputs recorded in state (`olds`) and the new ones. */
export function diffVolume(olds: VolumeSpec, news: VolumeSpec): FieldChange[] {
  return diffFields(olds, news, VOLUME_FIELD_RULES, false);
}
