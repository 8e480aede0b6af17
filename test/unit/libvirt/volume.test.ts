import fc from "fast-check";
import { checkInputs } from "../../../providers/check";
import { diffFields } from "../../../providers/libvirt/fieldChanges";
import {
  checkDeleteInUse,
  checkReplaceInUse,
  checkStagedImage,
  checkVolumePools,
  compressionOf,
  importBlockers,
  importRecorded,
  importTools,
  parseDomainDisks,
  parseDomainsSection,
  parseQemuImgInfo,
  planVolumeDelete,
  planVolumeImport,
  reimportReasons,
  VOLUME_FIELD_RULES,
  volumeOutputs,
  volumeRecord,
  volumeRecordPath,
  volumeSchema,
  type HostDomains,
  type VolumeHostFacts,
  type VolumeSpec,
} from "../../../providers/libvirt/volume";
import { inactiveFixture } from "./referenceHost";

/**
 * The host the Volume's provider talks to in the last tests: its pools section and the commands it
 * has; every command it is asked to run is recorded. withHost and the host lock are replaced, so
 * no SSH is needed.
 */
const scripted = { pools: "", installed: [] as string[], runs: [] as string[][] };

jest.mock("../../../providers/ssh/host", () => ({
  withHost: async (_connection: unknown, use: (host: unknown) => Promise<unknown>) => {
    const answer = (argv: string[]) => {
      scripted.runs.push(argv);
      const boundary = argv[1]?.startsWith("VFIO_HOST_BOUNDARY=") ? argv[1].slice("VFIO_HOST_BOUNDARY=".length) : undefined;
      if (!boundary) return { stdout: "", stderr: "", code: 0 };
      // readSections: ["env", boundary, "sh", "-c", script, "sh", ...args]; the script names its sections.
      const args = argv.slice(6);
      const sections: Record<string, string> = {
        pools: scripted.pools,
        installed: args.filter((c) => scripted.installed.includes(c)).join("\n"),
        exists: "",
        info: "",
        domains: "absent\n",
      };
      const names = [...argv[4].matchAll(/"\$VFIO_HOST_BOUNDARY" (\w+)/g)].map((m) => m[1]);
      return { stdout: names.map((name) => `\n${boundary} ${name}\n${sections[name]}\n`).join(""), stderr: "", code: 0 };
    };
    return use({ label: "root@192.0.2.10", escalates: false, reads: () => new Map(), run: async (argv: string[]) => answer(argv), exec: async (argv: string[]) => answer(argv) });
  },
}));

jest.mock("../../../providers/ssh/hostLock", () => ({
  lockOwner: () => "unit test",
  withHostLock: (_connection: unknown, _owner: string, fn: () => Promise<unknown>) => fn(),
}));

// Loaded after the mocks are in place.
const { volumeProvider } = require("../../../providers/libvirt/volumeResource") as typeof import("../../../providers/libvirt/volumeResource");

const URL_XZ = "https://github.com/home-assistant/operating-system/releases/download/7.5/haos_ova-7.5.qcow2.xz";
const SHA = "9B0C6E3D5A2F1E4B7C8D9A0B1C2D3E4F5A6B7C8D9E0F1A2B3C4D5E6F7A8B9C0D";
const IMAGES = "/var/lib/libvirt/images";
const virsh = ["env", "LC_ALL=C", "virsh", "--connect", "qemu:///system"];
const HOUR = 3_600_000;
const URL_80 = URL_XZ.replace(/7\.5/g, "8.0");

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
    expect(haos).toEqual({
      pool: "default",
      name: "haos_ova-7.5.qcow2",
      source: { url: URL_XZ },
      sha256: SHA.toLowerCase(),
      compression: "auto",
      format: "qcow2",
      allowReplaceInUse: false,
    });
  });

  it.each([
    [{ source: { url: URL_XZ, hostPath: "/srv/haos.qcow2.xz" } }, "source", `give exactly one of url (fetched with curl on the host) or hostPath, for example { url: "${URL_XZ}" }`],
    [{ source: { url: "ftp://example.org/haos.qcow2" } }, "source.url", `"ftp://example.org/haos.qcow2" is not an http or https URL; write for example "${URL_XZ}"`],
    [{ sha256: "abc" }, "sha256", '"abc" is not a SHA-256 digest (64 hex digits); write for example "9b0c...e1" as printed by sha256sum'],
    [{ name: "../etc/shadow" }, "name", '"../etc/shadow" is not a volume file name (letters, digits, - _ . + and starting with a letter or digit; no /); write for example "haos_ova-7.5.qcow2"'],
    [{ format: "vmdk" }, "format", '"vmdk" is not an image format: "qcow2" or "raw"; write for example "qcow2"'],
    [
      { source: { url: "http://example.org/haos.qcow2.xz" } },
      "source.url",
      '"http://example.org/haos.qcow2.xz" is plain http without sha256, so anyone on the path can swap the image; use the https URL, ' +
        "or give sha256 (64 hex digits, as the release page publishes it) so the download is checked",
    ],
    [{ allowReplaceInUse: "yes" }, "allowReplaceInUse", '"yes" is not true or false; write for example true'],
  ])("refuse %j with the key, the value and an example", (change, property, reason) => {
    expect(checkInputs(volumeSchema, { pool: "default", name: "haos_ova-7.5.qcow2", source: { url: URL_XZ }, format: "qcow2", ...change }).failures).toEqual([
      { property, reason },
    ]);
  });

  it("accept plain http when a digest checks the download", () => {
    expect(checkInputs(volumeSchema, { pool: "default", name: "disk.raw", source: { url: "http://example.org/disk.raw" }, sha256: SHA, format: "raw" }).failures).toBeUndefined();
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
        {
          describe: `download ${URL_XZ}`,
          argv: ["curl", "--fail", "--location", "--silent", "--show-error", "--retry", "3", "--proto-redir", "=https", "--output", download, "--url", URL_XZ],
          timeoutMs: HOUR,
        },
        { describe: `verify the SHA-256 of ${download}`, argv: ["sha256sum", "-c", "-"], stdin: `${SHA.toLowerCase()}  ${download}\n`, timeoutMs: HOUR },
        { describe: `decompress (xz) into ${staging}`, argv: ["sh", "-c", 'exec xz -dc -- "$1" > "$2"', "sh", download, staging], timeoutMs: HOUR },
        { describe: `remove the download ${download}`, argv: ["rm", "-f", "--", download] },
      ],
      inspect: { describe: `inspect ${staging}`, argv: ["qemu-img", "info", "--output=json", "--", staging] },
      commit: [
        { describe: `flush ${staging} to disk`, argv: ["sync", "--", staging] },
        { describe: `move the image to ${IMAGES}/haos_ova-7.5.qcow2`, argv: ["mv", "-f", "--", staging, `${IMAGES}/haos_ova-7.5.qcow2`] },
        { describe: `flush ${IMAGES} to disk`, argv: ["sync", "--", IMAGES] },
        { describe: "rescan pool default", argv: [...virsh, "pool-refresh", "--pool", "default"] },
      ],
      discard: { describe: "remove partial files", argv: ["rm", "-f", "--", download, staging] },
    });
  });

  it("copies an uncompressed host file and never removes the original", () => {
    const local = volumeSchema.parse({ pool: "default", name: "disk.raw", source: { hostPath: "/srv/disk.raw" }, format: "raw" });
    const plan = planVolumeImport(local, { ...facts, pool: { ...facts.pool!, state: "inactive" } })!;
    expect(plan.stage.map((s) => s.argv)).toEqual([["cp", "--", "/srv/disk.raw", `${IMAGES}/.disk.raw.partial`]]);
    expect(plan.commit.map((s) => s.argv[0])).toEqual(["sync", "mv", "sync"]);
    expect(plan.discard.argv).toEqual(["rm", "-f", "--", `${IMAGES}/.disk.raw.partial`]);
  });

  it("streams a gzip host file straight into the pool after checking it", () => {
    const local = volumeSchema.parse({ pool: "default", name: "disk.qcow2", source: { hostPath: "/srv/disk.qcow2.gz" }, sha256: SHA, format: "qcow2" });
    expect(planVolumeImport(local, facts)!.stage.map((s) => s.argv)).toEqual([
      ["sha256sum", "-c", "-"],
      ["sh", "-c", 'exec gzip -dc -- "$1" > "$2"', "sh", "/srv/disk.qcow2.gz", `${IMAGES}/.disk.qcow2.partial`],
    ]);
  });

  it("never overwrites a file that is there unless the declared image changed", () => {
    expect(planVolumeImport(haos, { ...facts, exists: true })).toBeUndefined();
    expect(planVolumeImport(haos, { ...facts, exists: true }, haos)).toBeUndefined();
    expect(planVolumeImport(haos, { ...facts, exists: true }, { ...haos, sha256: undefined })).toBeUndefined();
  });

  it("replaces a changed image only after staging and checking it, keeping the old one by a hard link", () => {
    const newer = { ...haos, source: { url: URL_80 }, sha256: undefined };
    const plan = planVolumeImport(newer, { ...facts, exists: true }, haos)!;
    expect(plan.previousPath).toBe(`${IMAGES}/.haos_ova-7.5.qcow2.vfio-host-previous`);
    expect(plan.stage.map((s) => s.argv[0])).toEqual(["curl", "sh", "rm"]);
    expect(plan.stage.flatMap((s) => s.argv)).not.toContain(`${IMAGES}/haos_ova-7.5.qcow2`);
    expect(plan.discard.argv).toEqual(["rm", "-f", "--", `${IMAGES}/.haos_ova-7.5.qcow2.download`, `${IMAGES}/.haos_ova-7.5.qcow2.partial`]);
    expect(plan.commit).toEqual([
      { describe: `flush ${IMAGES}/.haos_ova-7.5.qcow2.partial to disk`, argv: ["sync", "--", `${IMAGES}/.haos_ova-7.5.qcow2.partial`] },
      {
        describe: `keep the current image as ${IMAGES}/.haos_ova-7.5.qcow2.vfio-host-previous`,
        argv: ["ln", "-f", "--", `${IMAGES}/haos_ova-7.5.qcow2`, `${IMAGES}/.haos_ova-7.5.qcow2.vfio-host-previous`],
      },
      { describe: `move the image to ${IMAGES}/haos_ova-7.5.qcow2`, argv: ["mv", "-f", "--", `${IMAGES}/.haos_ova-7.5.qcow2.partial`, `${IMAGES}/haos_ova-7.5.qcow2`] },
      { describe: `flush ${IMAGES} to disk`, argv: ["sync", "--", IMAGES] },
      { describe: "rescan pool default", argv: [...virsh, "pool-refresh", "--pool", "default"] },
    ]);
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

describe("planVolumeDelete and VOLUME_FIELD_RULES", () => {
  it("removes the file, the image a re-import kept, the record of the import, and rescans the pool", () => {
    expect(planVolumeDelete(haos, { ...facts, exists: true })).toEqual([
      {
        describe: `remove ${IMAGES}/haos_ova-7.5.qcow2 (and ${IMAGES}/.haos_ova-7.5.qcow2.vfio-host-previous if a re-import left one) and the record of its import`,
        argv: [
          "rm", "-f", "--",
          `${IMAGES}/haos_ova-7.5.qcow2`, `${IMAGES}/.haos_ova-7.5.qcow2.vfio-host-previous`, `/var/lib/vfio-host/owned/volume${IMAGES}/haos_ova-7.5.qcow2`,
        ],
      },
      { describe: "rescan pool default", argv: [...virsh, "pool-refresh", "--pool", "default"] },
    ]);
    expect(planVolumeDelete(haos, facts)).toEqual([]);
  });

  it("takes a file as imported by the stack only while its record names the stack and the file as it is", () => {
    const stack = "vfio-host/homeassistant@192.0.2.10";
    const identity = "1837461 1060573184 1796456753";
    const record = volumeRecord(stack, identity);
    expect(record).toBe(`${stack}\n${identity}\n`);
    expect(volumeRecordPath(`${IMAGES}/haos_ova-7.5.qcow2`)).toBe(`/var/lib/vfio-host/owned/volume${IMAGES}/haos_ova-7.5.qcow2`);
    expect(importRecorded(record, identity, stack)).toBe(true);
    // Another stack's import, a file copied over it or put in its place since, no record, no stack known.
    expect(importRecorded(record, identity, "vfio-host/other@192.0.2.10")).toBe(false);
    expect(importRecorded(record, "1837461 1060573184 1796460000", stack)).toBe(false);
    expect(importRecorded(record, "1837999 1060573184 1796456753", stack)).toBe(false);
    expect(importRecorded(undefined, identity, stack)).toBe(false);
    expect(importRecorded(record, identity, undefined)).toBe(false);
  });

  it("updates in place for another source (never delete, then import), and replaces only for another file", () => {
    const newer = { ...haos, source: { url: URL_80 } };
    expect(diffFields(haos, newer, VOLUME_FIELD_RULES, false).map((c) => [c.field, c.applyInPlace])).toEqual([["source", true]]);
    expect(diffFields(haos, { ...haos, format: "raw" }, VOLUME_FIELD_RULES, false).map((c) => [c.field, c.applyInPlace])).toEqual([["format", true]]);
    expect(diffFields<VolumeSpec>({ ...haos, sha256: undefined }, haos, VOLUME_FIELD_RULES, false).map((c) => [c.field, c.applyInPlace])).toEqual([["sha256", true]]);
    expect(diffFields(haos, { ...haos, name: "haos-8.0.qcow2" }, VOLUME_FIELD_RULES, false).map((c) => [c.field, c.applyInPlace])).toEqual([["name", false]]);
  });
});

// `virsh dumpxml homeassistant` while it runs: libvirt adds id='N'. An overlay on the image, as
// `qemu-img create -b haos_ova-7.5.qcow2 -F qcow2 -f qcow2 test.qcow2` makes it.
const RUNNING_OVERLAY = `<domain type='kvm' id='7'>
  <name>haos-test</name>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/test.qcow2' index='2'/>
      <backingStore type='file' index='1'>
        <format type='qcow2'/>
        <source file='/var/lib/libvirt/images/haos_ova-7.5.qcow2'/>
        <backingStore/>
      </backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='volume' device='cdrom'>
      <source pool='default' volume='debian-12.iso'/>
      <target dev='sda' bus='sata'/>
    </disk>
  </devices>
</domain>
`;

describe("the domains that use a volume", () => {
  const homeassistant = parseDomainDisks("homeassistant", "", inactiveFixture);
  const overlay = parseDomainDisks("haos-test", RUNNING_OVERLAY, "");
  const domains: HostDomains = { readable: true, domains: [homeassistant, overlay] };
  const inUse = { ...facts, exists: true };
  const reasons = reimportReasons(haos, { ...haos, source: { url: URL_80 } });

  it("are read from every domain's live and inactive XML, backing files and pool volumes included", () => {
    expect(homeassistant).toEqual({ name: "homeassistant", running: false, sources: [{ file: `${IMAGES}/haos_ova-7.5.qcow2` }] });
    expect(overlay).toEqual({
      name: "haos-test",
      running: true,
      sources: [{ file: `${IMAGES}/test.qcow2` }, { file: `${IMAGES}/haos_ova-7.5.qcow2` }, { pool: "default", volume: "debian-12.iso" }],
    });
    expect(parseDomainsSection(`listed\n\0homeassistant\0\0${inactiveFixture}\0haos-test\0${RUNNING_OVERLAY}\0\0gone\0\0`)).toEqual(domains);
    expect(parseDomainsSection("absent\n")).toEqual({ readable: true, domains: [] });
    expect(parseDomainsSection("failed error: failed to connect to the hypervisor\nerror: Permission denied\n")).toEqual({
      readable: false,
      reason: "virsh list --all failed: error: failed to connect to the hypervisor error: Permission denied",
    });
    expect(parseDomainsSection("")).toEqual({ readable: false, reason: "virsh list --all failed" });
  });

  it("say which declared fields make the file another image", () => {
    expect(reasons).toEqual([`source ${URL_XZ} -> ${URL_80}`]);
    expect(reimportReasons(haos, { ...haos, format: "raw", sha256: "0".repeat(64) })).toEqual([`format qcow2 -> raw`, `sha256 ${SHA.toLowerCase()} -> ${"0".repeat(64)}`]);
    expect(reimportReasons({ ...haos, sha256: undefined }, haos)).toEqual([]);
    expect(reimportReasons(haos, { ...haos, sha256: undefined, compression: "xz" })).toEqual([]);
  });

  it("stop a re-import at preview, naming the domains and the key that allows it", () => {
    expect(checkReplaceInUse(haos, inUse, reasons, domains)).toBe(
      `Volume haos_ova-7.5.qcow2: source ${URL_XZ} -> ${URL_80} imports a new image over ${IMAGES}/haos_ova-7.5.qcow2, but it is a disk of ` +
        "domains homeassistant (shut off), haos-test (running): the guest's data would be replaced. To do it anyway, set allowReplaceInUse: true " +
        "on this volume (in a host stack: vfio-host:libvirt volumes[].allowReplaceInUse); the current image is then kept as " +
        `${IMAGES}/.haos_ova-7.5.qcow2.vfio-host-previous, and a running guest keeps writing to that one until it restarts. ` +
        "Otherwise put the volume's source back, or declare the new image as a volume of its own",
    );
    expect(checkReplaceInUse({ ...haos, allowReplaceInUse: true }, inUse, reasons, domains)).toBeUndefined();
    expect(checkReplaceInUse(haos, inUse, reasons, { readable: true, domains: [parseDomainDisks("other", "", RUNNING_OVERLAY.replace(/haos_ova-7.5/g, "other"))] })).toBeUndefined();
  });

  it("stop a re-import when the domains cannot be listed", () => {
    expect(checkReplaceInUse(haos, inUse, reasons, { readable: false, reason: "virsh list --all failed" })).toBe(
      `Volume haos_ova-7.5.qcow2: source ${URL_XZ} -> ${URL_80} imports a new image over ${IMAGES}/haos_ova-7.5.qcow2, but the host's ` +
        "libvirt domains could not be listed (virsh list --all failed), so it cannot tell whether a guest uses it; make virsh work for the SSH user, then run again",
    );
  });

  it("stop a delete while any domain still has the file as a disk", () => {
    expect(checkDeleteInUse(haos, inUse, { readable: true, domains: [homeassistant] })).toBe(
      `Volume haos_ova-7.5.qcow2: not deleting ${IMAGES}/haos_ova-7.5.qcow2: it is a disk of domain homeassistant (shut off), which this stack does not remove first. ` +
        `Detach it (virsh detach-disk homeassistant ${IMAGES}/haos_ova-7.5.qcow2 --persistent) or undefine homeassistant, then run again; ` +
        "or keep the file and drop the Volume from the stack with `pulumi state delete` (its URN is in `pulumi stack --show-urns`)",
    );
    const iso = volumeSchema.parse({ pool: "default", name: "debian-12.iso", source: { hostPath: "/srv/debian-12.iso" }, format: "raw" });
    expect(checkDeleteInUse(iso, inUse, domains)).toContain("it is a disk of domain haos-test (running)");
    expect(checkDeleteInUse(haos, inUse, { readable: true, domains: [] })).toBeUndefined();
  });
});

// The lab's guest image, as the lab stack imports it.
const labGuest = volumeSchema.parse({ pool: "default", name: "lab-guest.qcow2", source: { hostPath: "/srv/vfio-host/lab-guest.qcow2.xz" }, format: "qcow2" });
const XZ_LINE = "import default/lab-guest.qcow2 once xz is installed on the host (e.g. xz-utils on Debian, xz on Alpine: add it to libvirt.packages)";

/** The commands a stage step runs: argv[0], or the command a `sh -c` script execs. */
const commandsOf = (steps: readonly { argv: readonly string[] }[]) => steps.map((s) => (s.argv[0] === "sh" ? /^exec (\S+)/.exec(s.argv[2])![1] : s.argv[0]));
// What every system the project knows has in its base: coreutils, or busybox on Alpine.
const BASE_COMMANDS = ["sha256sum", "rm", "cp"];

describe("the commands an import needs", () => {
  it("are the downloader for a URL and the decompressor of its compression", () => {
    const tools = (source: object, compression = "auto") => importTools(volumeSchema.parse({ ...haos, source, compression })).map((t) => t.command);
    expect(tools({ url: URL_XZ })).toEqual(["curl", "xz"]);
    expect(tools({ url: "https://example.org/disk.raw.gz" })).toEqual(["curl", "gzip"]);
    expect(tools({ url: "https://example.org/disk.qcow2" })).toEqual(["curl"]);
    expect(tools({ hostPath: "/srv/vfio-host/lab-guest.qcow2.xz" })).toEqual(["xz"]);
    expect(tools({ hostPath: "/srv/disk.qcow2.xz" }, "none")).toEqual([]);
  });

  it("are exactly the commands its steps run beyond the base system's", () => {
    const spec = fc
      .record({
        url: fc.boolean(),
        suffix: fc.constantFrom(".qcow2", ".qcow2.xz", ".img.gz", ".raw"),
        compression: fc.constantFrom("auto", "xz", "gz", "none"),
        sha256: fc.option(fc.constant(SHA), { nil: undefined }),
      })
      .map(({ url, suffix, compression, sha256 }) =>
        volumeSchema.parse({
          pool: "default",
          name: "disk.qcow2",
          source: url ? { url: `https://example.org/disk${suffix}` } : { hostPath: `/srv/disk${suffix}` },
          compression,
          sha256,
          format: "qcow2",
        }),
      );
    fc.assert(
      fc.property(spec, (volume) => {
        const run = commandsOf(planVolumeImport(volume, facts)!.stage).filter((c) => !BASE_COMMANDS.includes(c));
        expect(new Set(run)).toEqual(new Set(importTools(volume).map((t) => t.command)));
      }),
    );
  });
});

describe("importBlockers", () => {
  it("wait for xz, naming its package on each system and the key that installs it first", () => {
    expect(importBlockers(labGuest, facts, [])).toEqual([
      {
        change: XZ_LINE,
        problem:
          "Volume lab-guest.qcow2: the import of /srv/vfio-host/lab-guest.qcow2.xz needs xz (to decompress it), which command -v does not find on the host; " +
          "install it (e.g. xz-utils on Debian, xz on Alpine; in a host stack, add it to vfio-host:libvirt.packages.packages, which HostPackages installs before the volume), then run again",
      },
    ]);
    expect(importBlockers(labGuest, facts, ["xz"])).toEqual([]);
  });

  it("keep the pool's wait and the tools' wait as two lines", () => {
    expect(importBlockers(haos, { pool: undefined }, []).map((b) => b.change)).toEqual([
      `import ${URL_XZ} as default/haos_ova-7.5.qcow2 once its StoragePool has created pool default`,
      "import default/haos_ova-7.5.qcow2 once curl and xz are installed on the host " +
        "(e.g. curl and xz-utils on Debian, curl and xz on Alpine: add them to libvirt.packages)",
    ]);
    expect(importBlockers(haos, { pool: undefined }, ["curl", "xz"])).toEqual([
      {
        change: `import ${URL_XZ} as default/haos_ova-7.5.qcow2 once its StoragePool has created pool default`,
        problem: 'Volume haos_ova-7.5.qcow2: there is no pool "default" on the host; declare a StoragePool named "default" and make the volume depend on it',
      },
    ]);
    expect(importBlockers(haos, facts, ["xz"])).toEqual([
      expect.objectContaining({
        change: "import default/haos_ova-7.5.qcow2 once curl is installed on the host (e.g. curl on Debian and Alpine: add it to libvirt.packages)",
      }),
    ]);
  });

  it("name every missing command and no other", () => {
    fc.assert(
      fc.property(fc.subarray(["curl", "xz", "gzip", "qemu-img"]), (installed) => {
        const changes = importBlockers(haos, facts, installed).map((b) => b.change);
        const missing = ["curl", "xz"].filter((c) => !installed.includes(c));
        expect(changes).toHaveLength(missing.length > 0 ? 1 : 0);
        for (const command of ["curl", "xz"]) expect(changes.join("").includes(` ${command} `)).toBe(missing.includes(command));
      }),
    );
  });
});

describe("the Volume's provider on a host that lacks the import's tools", () => {
  const POOL_XML = "<pool type='dir'><name>default</name><uuid>0d5b8a1e-6c2f-4d9a-b3e7-1f2a3b4c5d6e</uuid><target><path>/var/lib/libvirt/images</path></target></pool>";
  const POOL_INFO = "Name:           default\nState:          running\nAutostart:      yes\n";
  const connection = { host: "192.0.2.10", port: 22, user: "root", hostKey: "SHA256:" + "A".repeat(43), privateKey: "key" };
  const news = { pool: "default", name: "lab-guest.qcow2", source: { hostPath: "/srv/vfio-host/lab-guest.qcow2.xz" }, format: "qcow2", connection, stackName: "dev", __provider: "serialized" };
  const factReads = (runs: readonly string[][]) => runs.filter((argv) => argv[1]?.startsWith("VFIO_HOST_BOUNDARY="));

  beforeEach(() => Object.assign(scripted, { pools: `\0default\0${POOL_XML}\0${POOL_INFO}\0`, installed: [], runs: [] }));

  it("previews the import as waiting for xz, with the steps it then runs, in the fact reads it made before", async () => {
    const result = await volumeProvider.check!({}, news);
    expect(result.failures).toBeUndefined();
    expect(result.inputs!.plannedChanges).toEqual([
      XZ_LINE,
      `decompress (xz) into ${IMAGES}/.lab-guest.qcow2.partial`,
      `inspect ${IMAGES}/.lab-guest.qcow2.partial`,
      `flush ${IMAGES}/.lab-guest.qcow2.partial to disk`,
      `move the image to ${IMAGES}/lab-guest.qcow2`,
      `flush ${IMAGES} to disk`,
      "rescan pool default",
    ]);
    // The pools with the commands, then the file and the domains: no round trip for the tools.
    expect(scripted.runs).toHaveLength(2);
    expect(factReads(scripted.runs)[0].slice(6)).toEqual(["xz"]);
  });

  it("previews both waits when the pool is not there either, in one fact read", async () => {
    scripted.pools = "";
    const result = await volumeProvider.check!({}, news);
    expect(result.inputs!.plannedChanges).toEqual([
      "import /srv/vfio-host/lab-guest.qcow2.xz as default/lab-guest.qcow2 once its StoragePool has created pool default",
      XZ_LINE,
    ]);
    expect(scripted.runs).toHaveLength(1);
  });

  it("fails the create with the problem before it runs anything, so no partial file is left", async () => {
    await expect(volumeProvider.create(news)).rejects.toThrow(
      "Volume lab-guest.qcow2: the import of /srv/vfio-host/lab-guest.qcow2.xz needs xz (to decompress it), which command -v does not find on the host",
    );
    expect(scripted.runs).toEqual(factReads(scripted.runs));
  });

  it("imports once xz is there", async () => {
    scripted.installed = ["xz"];
    expect((await volumeProvider.check!({}, news)).inputs!.plannedChanges).toEqual([
      `decompress (xz) into ${IMAGES}/.lab-guest.qcow2.partial`,
      `inspect ${IMAGES}/.lab-guest.qcow2.partial`,
      `flush ${IMAGES}/.lab-guest.qcow2.partial to disk`,
      `move the image to ${IMAGES}/lab-guest.qcow2`,
      `flush ${IMAGES} to disk`,
      "rescan pool default",
    ]);
    scripted.runs = [];
    // The scripted host's qemu-img prints nothing: the create gets as far as the decompression and the inspection.
    await expect(volumeProvider.create(news)).rejects.toThrow();
    expect(scripted.runs.filter((argv) => !factReads(scripted.runs).includes(argv)).map((argv) => argv[0])).toEqual(["sh", "qemu-img", "rm"]);
  });
});
