import { checkInputs } from "../../../providers/check";
import {
  checkStagedImage,
  checkVolumePools,
  compressionOf,
  diffVolume,
  parseQemuImgInfo,
  planVolumeDelete,
  planVolumeImport,
  volumeOutputs,
  volumeSchema,
  type VolumeHostFacts,
} from "../../../providers/libvirt/volume";

const URL_XZ = "https://github.com/home-assistant/operating-system/releases/download/7.5/haos_ova-7.5.qcow2.xz";
const SHA = "9B0C6E3D5A2F1E4B7C8D9A0B1C2D3E4F5A6B7C8D9E0F1A2B3C4D5E6F7A8B9C0D";
const IMAGES = "/var/lib/libvirt/images";
const virsh = ["env", "LC_ALL=C", "virsh", "--connect", "qemu:///system"];
const HOUR = 3_600_000;

const haos = volumeSchema.parse({ pool: "default", name: "haos_ova-7.5.qcow2", source: { url: URL_XZ }, sha256: SHA, format: "qcow2" });
const facts: VolumeHostFacts = { pool: { name: "default", targetPath: IMAGES, state: "running" }, exists: false };

// `qemu-img info --output=json haos_ova-7.5.qcow2` (qemu 7.2).
const HAOS_INFO = `{
    "virtual-size": 34359738368,
    "filename": "/var/lib/libvirt/images/.haos_ova-7.5.qcow2.partial",
    "cluster-size": 65536,
    "format": "qcow2",
    "actual-size": 1060573184,
    "format-specific": {
        "type": "qcow2",
        "data": { "compat": "1.1", "compression-type": "zlib", "lazy-refcounts": false, "refcount-bits": 16, "corrupt": false, "extended-l2": false }
    },
    "dirty-flag": false
}`;

describe("volume inputs", () => {
  it("lower-case the digest and default compression to auto", () => {
    expect(haos).toEqual({ pool: "default", name: "haos_ova-7.5.qcow2", source: { url: URL_XZ }, sha256: SHA.toLowerCase(), compression: "auto", format: "qcow2" });
  });

  it.each([
    [{ source: { url: URL_XZ, hostPath: "/srv/haos.qcow2.xz" } }, "source", `give exactly one of url (fetched with curl on the host) or hostPath, for example { url: "${URL_XZ}" }`],
    [{ source: { url: "ftp://example.org/haos.qcow2" } }, "source.url", `"ftp://example.org/haos.qcow2" is not an http or https URL; write for example "${URL_XZ}"`],
    [{ sha256: "abc" }, "sha256", '"abc" is not a SHA-256 digest (64 hex digits); write for example "9b0c...e1" as printed by sha256sum'],
    [{ name: "../etc/shadow" }, "name", '"../etc/shadow" is not a volume file name (letters, digits, - _ . + and starting with a letter or digit; no /); write for example "haos_ova-7.5.qcow2"'],
    [{ format: "vmdk" }, "format", '"vmdk" is not an image format: "qcow2" or "raw"; write for example "qcow2"'],
  ])("refuse %j with the key, the value and an example", (change, property, reason) => {
    expect(checkInputs(volumeSchema, { pool: "default", name: "haos_ova-7.5.qcow2", source: { url: URL_XZ }, format: "qcow2", ...change }).failures).toEqual([
      { property, reason },
    ]);
  });

  it("take the compression from the suffix when it is auto", () => {
    const withSource = (source: object, compression = "auto") => compressionOf(volumeSchema.parse({ ...haos, source, compression }));
    expect(withSource({ url: URL_XZ })).toBe("xz");
    expect(withSource({ url: "https://example.org/disk.raw.gz?download=1" })).toBe("gz");
    expect(withSource({ hostPath: "/srv/disk.qcow2" })).toBe("none");
    expect(withSource({ hostPath: "/srv/disk.qcow2.xz" }, "none")).toBe("none");
  });
});

describe("checkVolumePools", () => {
  it("names a volume whose pool is not declared, and one declared twice", () => {
    expect(checkVolumePools([haos, { ...haos, pool: "images" }, haos], [{ name: "default" }])).toEqual([
      'volume haos_ova-7.5.qcow2: pool "images" is not declared (declared pools: default); set pool to one of them or declare a StoragePool named "images"',
      'volume haos_ova-7.5.qcow2: declared twice in pool "default"; declare each file once',
    ]);
    expect(checkVolumePools([haos], [{ name: "default" }])).toEqual([]);
  });
});

describe("planVolumeImport", () => {
  it("downloads, verifies, decompresses beside the target, then renames and rescans", () => {
    const download = `${IMAGES}/.haos_ova-7.5.qcow2.download`;
    const staging = `${IMAGES}/.haos_ova-7.5.qcow2.partial`;
    expect(planVolumeImport(haos, facts)).toEqual({
      path: `${IMAGES}/haos_ova-7.5.qcow2`,
      stagingPath: staging,
      stage: [
        { describe: `download ${URL_XZ}`, argv: ["curl", "--fail", "--location", "--silent", "--show-error", "--retry", "3", "--output", download, "--url", URL_XZ], timeoutMs: HOUR },
        { describe: `verify the SHA-256 of ${download}`, argv: ["sha256sum", "-c", "-"], stdin: `${SHA.toLowerCase()}  ${download}\n`, timeoutMs: HOUR },
        { describe: `decompress (xz) into ${staging}`, argv: ["sh", "-c", 'exec xz -dc -- "$1" > "$2"', "sh", download, staging], timeoutMs: HOUR },
        { describe: `remove the download ${download}`, argv: ["rm", "-f", "--", download] },
      ],
      inspect: { describe: `inspect ${staging}`, argv: ["qemu-img", "info", "--output=json", "--", staging] },
      commit: [
        { describe: `move the image to ${IMAGES}/haos_ova-7.5.qcow2`, argv: ["mv", "-f", "--", staging, `${IMAGES}/haos_ova-7.5.qcow2`] },
        { describe: "rescan pool default", argv: [...virsh, "pool-refresh", "--pool", "default"] },
      ],
      discard: { describe: "remove partial files", argv: ["rm", "-f", "--", download, staging] },
    });
  });

  it("copies an uncompressed host file and never removes the original", () => {
    const local = volumeSchema.parse({ pool: "default", name: "disk.raw", source: { hostPath: "/srv/disk.raw" }, format: "raw" });
    const plan = planVolumeImport(local, { ...facts, pool: { ...facts.pool!, state: "inactive" } })!;
    expect(plan.stage.map((s) => s.argv)).toEqual([["cp", "--", "/srv/disk.raw", `${IMAGES}/.disk.raw.partial`]]);
    expect(plan.commit.map((s) => s.argv[0])).toEqual(["mv"]);
    expect(plan.discard.argv).toEqual(["rm", "-f", "--", `${IMAGES}/.disk.raw.partial`]);
  });

  it("streams a gzip host file straight into the pool after checking it", () => {
    const local = volumeSchema.parse({ pool: "default", name: "disk.qcow2", source: { hostPath: "/srv/disk.qcow2.gz" }, sha256: SHA, format: "qcow2" });
    expect(planVolumeImport(local, facts)!.stage.map((s) => s.argv)).toEqual([
      ["sha256sum", "-c", "-"],
      ["sh", "-c", 'exec gzip -dc -- "$1" > "$2"', "sh", "/srv/disk.qcow2.gz", `${IMAGES}/.disk.qcow2.partial`],
    ]);
  });

  it("never overwrites a file that is there", () => {
    expect(planVolumeImport(haos, { ...facts, exists: true })).toBeUndefined();
  });

  it("refuses a volume whose pool the host does not have", () => {
    expect(() => planVolumeImport(haos, { exists: false })).toThrow(
      'Volume haos_ova-7.5.qcow2: there is no pool "default" on the host; declare a StoragePool named "default" and make the volume depend on it',
    );
  });
});

describe("the staged image", () => {
  const info = parseQemuImgInfo(HAOS_INFO);

  it("is read from qemu-img info", () => {
    expect(info).toEqual({ format: "qcow2", virtualSizeBytes: 34359738368, backingFile: null });
    expect(volumeOutputs(`${IMAGES}/haos_ova-7.5.qcow2`, info)).toEqual({ path: `${IMAGES}/haos_ova-7.5.qcow2`, format: "qcow2", virtualSizeBytes: 34359738368 });
  });

  it("must be in the declared format and stand alone", () => {
    expect(checkStagedImage(haos, info)).toBeUndefined();
    expect(checkStagedImage({ ...haos, format: "raw" }, info)).toBe(
      'Volume haos_ova-7.5.qcow2: the image is qcow2 (qemu-img info) but format is "raw"; write format: "qcow2" if that is right, or check source and compression',
    );
    expect(checkStagedImage(haos, { ...info, backingFile: "/etc/shadow" })).toBe(
      "Volume haos_ova-7.5.qcow2: the image refers to a backing file (/etc/shadow); import a standalone image (qemu-img convert -O qcow2 IN OUT)",
    );
  });

  it("is refused when qemu-img prints something else", () => {
    expect(() => parseQemuImgInfo('{"format":"raw"}')).toThrow('qemu-img info printed JSON without a numeric virtual-size and a format: "{\\"format\\":\\"raw\\"}"');
  });
});

describe("planVolumeDelete and diffVolume", () => {
  it("removes the file and rescans the pool", () => {
    expect(planVolumeDelete(haos, { ...facts, exists: true })).toEqual([
      { describe: `remove ${IMAGES}/haos_ova-7.5.qcow2`, argv: ["rm", "-f", "--", `${IMAGES}/haos_ova-7.5.qcow2`] },
      { describe: "rescan pool default", argv: [...virsh, "pool-refresh", "--pool", "default"] },
    ]);
    expect(planVolumeDelete(haos, facts)).toEqual([]);
  });

  it("replaces for another source, and changes nothing for a digest added later", () => {
    const newer = { ...haos, source: { url: URL_XZ.replace(/7\.5/g, "8.0") } };
    expect(diffVolume(haos, newer).map((c) => [c.field, c.applyInPlace])).toEqual([["source", false]]);
    expect(diffVolume({ ...haos, sha256: undefined }, haos).map((c) => [c.field, c.applyInPlace])).toEqual([["sha256", true]]);
  });
});
