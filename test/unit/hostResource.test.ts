// The base hands each plan what the engine recorded before: the state (update, read) and the
// previous inputs (check, update), the base's own keys left out. The provider runs here against a
// scripted host (withHost and the host lock replaced), so no SSH is needed.
import { z } from "zod";
import type { HostResourceDefinition, PreviousInputs } from "../../providers/hostResource";

/** What the scripted host answers to the pool snippets: the pools section, then the directory section. */
const scripted = { pools: "", commands: [] as string[][] };

jest.mock("../../providers/ssh/host", () => ({
  withHost: async (_connection: unknown, use: (host: unknown) => Promise<unknown>) =>
    use({
      label: "root@192.0.2.10",
      // Nothing is kept between reads: each one reaches the script.
      escalates: false,
      reads: () => new Map(),
      run: async (argv: string[]) => {
        scripted.commands.push(argv);
        const boundary = argv[1]?.startsWith("VFIO_HOST_BOUNDARY=") ? argv[1].slice("VFIO_HOST_BOUNDARY=".length) : undefined;
        if (!boundary) return { stdout: "", stderr: "", code: 0 };
        return { stdout: `\n${boundary} pools\n${scripted.pools}\n${boundary} directory\nyes\n`, stderr: "", code: 0 };
      },
    }),
}));

jest.mock("../../providers/ssh/hostLock", () => ({
  lockOwner: () => "unit test",
  withHostLock: (_connection: unknown, _owner: string, fn: () => Promise<unknown>) => fn(),
}));

// Loaded after the mocks are in place.
const { hostResourceProvider } = require("../../providers/hostResource") as typeof import("../../providers/hostResource");
const { storagePoolProvider } = require("../../providers/libvirt/poolResource") as typeof import("../../providers/libvirt/poolResource");

const connection = { host: "192.0.2.10", port: 22, user: "root", hostKey: "SHA256:" + "A".repeat(43), privateKey: "key" };
/** What the base adds to a resource's own properties, in the inputs check returns and in the outputs. */
const baseKeys = { connection, plannedChanges: [], planned: { x: 1 }, stackName: "dev", __provider: "serialized" };

interface Call {
  state: unknown;
  previous: PreviousInputs | undefined;
}

function recordingProvider() {
  const calls: Call[] = [];
  const definition: HostResourceDefinition<{ name: string }, string, { n: number }> = {
    schema: z.strictObject({ name: z.string() }),
    async plan(_host, inputs, state, previous) {
      calls.push({ state, previous });
      return inputs.name;
    },
    describe: () => [],
    apply: async () => ({ n: 2 }),
    revert: async () => undefined,
    identity: (inputs) => inputs.name,
  };
  return { provider: hostResourceProvider(definition), calls };
}

describe("hostResourceProvider hands the plan what the engine recorded", () => {
  it("in check: the recorded inputs, without the base's keys, and no state", async () => {
    const { provider, calls } = recordingProvider();
    const result = await provider.check!({ name: "old", ...baseKeys }, { name: "new", connection, stackName: "dev", __provider: "serialized" });
    expect(result.failures).toBeUndefined();
    expect(calls).toEqual([{ state: undefined, previous: { name: "old" } }]);
  });

  it("in update: the state and the inputs the recorded outputs hold", async () => {
    const { provider, calls } = recordingProvider();
    await provider.update!("id", { name: "old", ...baseKeys, state: { n: 1 } }, { name: "new", connection, stackName: "dev", __provider: "serialized" });
    expect(calls).toEqual([{ state: { n: 1 }, previous: { name: "old" } }]);
  });

  it("on a create (check with empty olds, then create) nothing; in read the state only", async () => {
    const { provider, calls } = recordingProvider();
    const news = { name: "new", connection, stackName: "dev", __provider: "serialized" };
    await provider.check!({}, news);
    await provider.create(news);
    await provider.read!("id", { name: "new", ...baseKeys, state: { n: 1 } });
    expect(calls).toEqual([
      { state: undefined, previous: undefined },
      { state: undefined, previous: undefined },
      { state: { n: 1 }, previous: undefined },
    ]);
  });
});

describe("StoragePool's check, through the base", () => {
  const poolXml = "<pool type='dir'><name>images</name><uuid>7c1d1e0a-5b8e-4a43-9f7e-2b1f0c6d9a11</uuid><target><path>/var/lib/libvirt/images</path></target></pool>";
  const poolInfo = "Name:           images\nState:          running\nAutostart:      yes\n";
  const news = { name: "images", path: "/var/lib/libvirt/images", connection, stackName: "dev", __provider: "serialized" };

  beforeEach(() => Object.assign(scripted, { pools: `\0images\0${poolXml}\0${poolInfo}\0`, commands: [] }));

  it("takes the pool of the name the stack recorded before as its own", async () => {
    const result = await storagePoolProvider.check!({ name: "images", path: "/var/lib/libvirt/images", ...baseKeys }, news);
    expect(result.failures).toBeUndefined();
  });

  it("refuses a pool of that name on a create, as one the stack did not make", async () => {
    const result = await storagePoolProvider.check!({}, news);
    expect(result.failures).toEqual([{ property: "(host)", reason: expect.stringContaining("this stack did not create it. Set adopt: true") }]);
  });
});
