import fc from "fast-check";
import { checkInputs } from "../../../providers/check";
import type { HostStep } from "../../../providers/hostStep";
import { diffFields } from "../../../providers/libvirt/fieldChanges";
import {
  existingPool,
  parsePoolXml,
  planPool,
  planPoolDelete,
  POOL_FIELD_RULES,
  storagePoolSchema,
  type ExistingPool,
  type PoolHostFacts,
} from "../../../providers/libvirt/pool";

const virsh = ["env", "LC_ALL=C", "virsh", "--connect", "qemu:///system"];
const IMAGES = "/var/lib/libvirt/images";
const spec = storagePoolSchema.parse({ name: "default", path: IMAGES });
/** The UUID a stack gives the pools it defines (stackUuid.ts). */
const OWN_UUID = "5a0e2c3d-8f41-5b6a-9c7d-0e1f2a3b4c5d";

// `virsh pool-dumpxml default` and `virsh pool-info default` on a Debian host where libvirt made the default pool.
const DEFAULT_POOL_XML = `<pool type='dir'>
  <name>default</name>
  <uuid>0d5b8a1e-6c2f-4d9a-b3e7-1f2a3b4c5d6e</uuid>
  <capacity unit='bytes'>104560844800</capacity>
  <allocation unit='bytes'>2226270208</allocation>
  <available unit='bytes'>102334574592</available>
  <source>
  </source>
  <target>
    <path>/var/lib/libvirt/images</path>
    <permissions>
      <mode>0711</mode>
      <owner>0</owner>
      <group>0</group>
    </permissions>
  </target>
</pool>
`;
const DEFAULT_POOL_INFO = `Name:           default
UUID:           0d5b8a1e-6c2f-4d9a-b3e7-1f2a3b4c5d6e
State:          running
Persistent:     yes
Autostart:      yes
Capacity:       97.38 GiB
Allocation:     2.07 GiB
Available:      95.31 GiB

`;
const defaultPool = existingPool(DEFAULT_POOL_XML, DEFAULT_POOL_INFO);
const ours = { uuid: defaultPool.uuid };

describe("StoragePool inputs", () => {
  it("default to autostart, no adoption, and keeping the directory", () => {
    expect(storagePoolSchema.parse({ name: "default", path: "/var/lib/libvirt/images/" })).toEqual({
      name: "default",
      type: "dir",
      path: IMAGES,
      autostart: true,
      adopt: false,
      removeDirectoryOnDelete: false,
    });
  });

  it.each([
    [{ path: "var/lib/libvirt/images" }, "path", '"var/lib/libvirt/images" is not absolute; write for example /var/lib/libvirt/images'],
    [
      { path: "/srv/it's" },
      "path",
      "\"/srv/it's\" contains a quote, backslash, newline or other control character, which the fact scripts and virsh's " +
        "line-based output cannot carry safely; write a plain path such as /var/lib/libvirt/images",
    ],
    [
      { path: "/srv/images\n" },
      "path",
      '"/srv/images\\n" contains a quote, backslash, newline or other control character, which the fact scripts and virsh\'s ' +
        "line-based output cannot carry safely; write a plain path such as /var/lib/libvirt/images",
    ],
    [{ path: "/srv/../etc" }, "path", '"/srv/../etc" contains a "." or ".." segment; write the resolved path, for example /var/lib/libvirt/images'],
    [{ type: "logical" }, "type", '"logical" is not "dir" (the only pool type supported); write for example "dir"'],
    [{ autostart: "yes" }, "autostart", '"yes" is not true or false; write for example true'],
  ])("refuse %j with the key, the value and an example", (change, property, reason) => {
    expect(checkInputs(storagePoolSchema, { name: "default", path: IMAGES, ...change }).failures).toEqual([{ property, reason }]);
  });
});

describe("existingPool", () => {
  it("reads name, uuid, type, target, state and autostart from pool-dumpxml and pool-info", () => {
    expect(defaultPool).toEqual({
      name: "default",
      uuid: "0d5b8a1e-6c2f-4d9a-b3e7-1f2a3b4c5d6e",
      type: "dir",
      targetPath: IMAGES,
      state: "running",
      autostart: true,
    });
  });
});

describe("planPool", () => {
  const fresh: PoolHostFacts = { pools: [], targetDirectoryExists: false };

  it("defines, builds, starts and autostarts a pool on a fresh host, as argv arrays", () => {
    expect(planPool(spec, fresh, undefined, OWN_UUID)).toEqual([
      {
        describe: `define pool default (dir at ${IMAGES})`,
        argv: [...virsh, "pool-define", "--file", "/dev/stdin"],
        stdin: `<pool type="dir">\n  <name>default</name>\n  <uuid>${OWN_UUID}</uuid>\n  <target>\n    <path>${IMAGES}</path>\n  </target>\n</pool>\n`,
      },
      { describe: `create directory ${IMAGES}`, argv: [...virsh, "pool-build", "--pool", "default"] },
      { describe: "start pool default", argv: [...virsh, "pool-start", "--pool", "default"] },
      { describe: "start pool default at boot", argv: [...virsh, "pool-autostart", "--pool", "default"] },
    ]);
  });

  it("does not build (and so re-mode) a directory that exists", () => {
    expect(planPool({ ...spec, autostart: false }, { pools: [], targetDirectoryExists: true }).map((s) => s.argv[5])).toEqual(["pool-define", "pool-start"]);
  });

  it("takes a pool with the stack's UUID as its own: a killed run defined it before Pulumi recorded it", () => {
    const defined = { ...defaultPool, uuid: OWN_UUID, state: "inactive", autostart: false };
    expect(planPool(spec, { pools: [defined], targetDirectoryExists: true }, undefined, OWN_UUID).map((s) => s.describe)).toEqual([
      "start pool default",
      "start pool default at boot",
    ]);
    expect(() => planPool(spec, { pools: [defaultPool], targetDirectoryExists: true }, undefined, OWN_UUID)).toThrow("this stack did not create it");
  });

  it("refuses the default pool libvirt already made at the same path, unless adopt is true", () => {
    const facts = { pools: [defaultPool], targetDirectoryExists: true };
    expect(() => planPool(spec, facts)).toThrow(
      "StoragePool default: a pool of that name already exists on the host (uuid 0d5b8a1e-6c2f-4d9a-b3e7-1f2a3b4c5d6e, dir at " +
        "/var/lib/libvirt/images, running, autostart on) and this stack did not create it. Set adopt: true to manage it " +
        "(pulumi destroy will then remove it as well), or choose another name.",
    );
    expect(planPool({ ...spec, adopt: true }, facts)).toEqual([
      { describe: "rescan pool default", argv: [...virsh, "pool-refresh", "--pool", "default"] },
    ]);
  });

  it("has no steps for its own pool as declared", () => {
    expect(planPool(spec, { pools: [defaultPool], targetDirectoryExists: true }, ours)).toEqual([]);
  });

  it("starts its own pool when it is inactive, building a missing directory first, and follows autostart", () => {
    const stopped = { ...defaultPool, state: "inactive" };
    expect(planPool({ ...spec, autostart: false }, { pools: [stopped], targetDirectoryExists: false }, ours).map((s) => s.argv.slice(5))).toEqual([
      ["pool-build", "--pool", "default"],
      ["pool-start", "--pool", "default"],
      ["pool-autostart", "--pool", "default", "--disable"],
    ]);
  });

  it("refuses a path another pool already targets", () => {
    const facts = { pools: [defaultPool], targetDirectoryExists: true };
    expect(() => planPool({ ...spec, name: "images", path: "/var/lib/libvirt/images" }, facts)).toThrow(
      'StoragePool images: path /var/lib/libvirt/images is already the target of pool "default" (uuid 0d5b8a1e-6c2f-4d9a-b3e7-1f2a3b4c5d6e, ' +
        "dir at /var/lib/libvirt/images, running, autostart on); libvirt allows one pool per directory. Declare that pool instead " +
        '(name: "default" with adopt: true), or choose another path.',
    );
  });

  it("refuses to adopt a pool that points elsewhere or is not a dir pool", () => {
    const elsewhere = { ...defaultPool, targetPath: "/srv/images/" };
    expect(() => planPool({ ...spec, adopt: true }, { pools: [elsewhere], targetDirectoryExists: true })).toThrow(
      'StoragePool default: the pool on the host targets /srv/images/, not /var/lib/libvirt/images as declared; set path: "/srv/images/" ' +
        "to keep it as it is, or remove it (virsh pool-destroy default; virsh pool-undefine default) to have it defined at /var/lib/libvirt/images.",
    );
    expect(() => planPool({ ...spec, adopt: true }, { pools: [{ ...defaultPool, type: "logical" }], targetDirectoryExists: true })).toThrow(
      "StoragePool default: the pool on the host is of type logical, not dir; choose another name for a dir pool.",
    );
  });

  // A model of what the virsh commands do to the facts, to check that a plan, once applied, leaves nothing to do.
  function apply(facts: PoolHostFacts, steps: readonly HostStep[]): PoolHostFacts {
    let { pools, targetDirectoryExists } = facts;
    for (const step of steps) {
      const [command, ...args] = step.argv.slice(5);
      const name = args[args.indexOf("--pool") + 1];
      const update = (change: Partial<ExistingPool>) => (pools = pools.map((p) => (p.name === name ? { ...p, ...change } : p)));
      if (command === "pool-define") {
        const defined = parsePoolXml(step.stdin!);
        pools = [...pools, { ...defined, uuid: defined.uuid || "11111111-2222-4333-8444-555555555555", state: "inactive", autostart: false }];
      } else if (command === "pool-build") targetDirectoryExists = true;
      else if (command === "pool-start") {
        if (!targetDirectoryExists) throw new Error("cannot open directory");
        update({ state: "running" });
      } else if (command === "pool-autostart") update({ autostart: !args.includes("--disable") });
      else if (command !== "pool-refresh") throw new Error(`unexpected ${command}`);
    }
    return { pools, targetDirectoryExists };
  }

  it("has nothing to do once its plan is applied, whatever pools the host had", () => {
    const pool = fc.record({
      name: fc.constantFrom("default", "images", "iso"),
      uuid: fc.uuid(),
      type: fc.constantFrom("dir", "dir", "logical"),
      targetPath: fc.constantFrom(IMAGES, `${IMAGES}/`, "/srv/images", "/srv/iso"),
      state: fc.constantFrom("running", "inactive"),
      autostart: fc.boolean(),
    });
    const pools = fc.uniqueArray(pool, { maxLength: 3, selector: (p) => p.name });
    const declared = fc.record({
      name: fc.constantFrom("default", "images"),
      path: fc.constantFrom(IMAGES, "/srv/images"),
      autostart: fc.boolean(),
      adopt: fc.boolean(),
    });
    let planned = 0;
    fc.assert(
      fc.property(pools, declared, fc.boolean(), fc.boolean(), fc.option(fc.uuid()), (hostPools, inputs, dirExists, recorded, own) => {
        const desired = storagePoolSchema.parse(inputs);
        const facts = { pools: hostPools, targetDirectoryExists: dirExists };
        const state = recorded ? hostPools.find((p) => p.name === desired.name) : undefined;
        let steps: HostStep[];
        try {
          steps = planPool(desired, facts, state, own ?? undefined);
        } catch {
          return; // refused: nothing was touched
        }
        planned++;
        const after = apply(facts, steps);
        const uuid = after.pools.find((p) => p.name === desired.name)!.uuid;
        expect(planPool(desired, after, { uuid })).toEqual([]);
        // A run killed after the apply, before the state recorded the pool, finds nothing to do either.
        if (own !== null && !facts.pools.some((p) => p.name === desired.name)) expect(planPool(desired, after, undefined, own)).toEqual([]);
      }),
    );
    expect(planned).toBeGreaterThan(10); // the property held for plans, not only for refusals
  });
});

describe("planPoolDelete", () => {
  const facts = { pools: [defaultPool], targetDirectoryExists: true };

  it("stops and undefines the pool, leaving the directory", () => {
    expect(planPoolDelete(spec, facts, ours)).toEqual([
      { describe: "stop pool default", argv: [...virsh, "pool-destroy", "--pool", "default"] },
      { describe: "undefine pool default", argv: [...virsh, "pool-undefine", "--pool", "default"] },
    ]);
  });

  it("removes the (empty) directory between stop and undefine when asked", () => {
    expect(planPoolDelete({ ...spec, removeDirectoryOnDelete: true }, facts, ours).map((s) => s.argv[5])).toEqual(["pool-destroy", "pool-delete", "pool-undefine"]);
  });

  it("leaves a pool alone that is gone or is not the one on record", () => {
    expect(planPoolDelete(spec, { pools: [], targetDirectoryExists: true }, ours)).toEqual([]);
    expect(planPoolDelete(spec, facts, { uuid: "11111111-2222-4333-8444-555555555555" })).toEqual([]);
  });
});

describe("POOL_FIELD_RULES", () => {
  it("replaces for another name or path and switches autostart in place", () => {
    expect(diffFields(spec, { ...spec, path: "/srv/images", autostart: false }, POOL_FIELD_RULES, false)).toEqual([
      { field: "path", from: IMAGES, to: "/srv/images", applyInPlace: false, needsRestart: false },
      { field: "autostart", from: true, to: false, applyInPlace: true, needsRestart: false },
    ]);
  });
});
