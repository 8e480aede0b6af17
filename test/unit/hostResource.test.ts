// The base hands each plan what the engine recorded before: the state (update, read) and the
// previous inputs (check, update), the base's own keys left out; and the stack on its host. The provider runs here against a
// scripted host (withHost and the host lock replaced), so no SSH is needed.
import { z } from "zod";
import type { HostResourceDefinition, PreviousInputs, StackOnHost } from "../../providers/hostResource";

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
const { stackUuid } = require("../../providers/libvirt/stackUuid") as typeof import("../../providers/libvirt/stackUuid");

const connection = { host: "192.0.2.10", port: 22, user: "root", hostKey: "SHA256:" + "A".repeat(43), privateKey: "key" };
/** What the base adds to a resource's own properties, in the inputs check returns and in the outputs. */
const baseKeys = { connection, plannedChanges: [], planned: { x: 1 }, stackName: "dev", project: "vfio-host", __provider: "serialized" };
/** What the program sends for a resource besides its own inputs. */
const programKeys = { connection, stackName: "dev", project: "vfio-host", __provider: "serialized" };
const STACK = "vfio-host/dev@192.0.2.10";

interface Call {
  state: unknown;
  previous: PreviousInputs | undefined;
  stack: StackOnHost;
}

function recordingProvider() {
  const calls: Call[] = [];
  const definition: HostResourceDefinition<{ name: string }, string, { n: number }> = {
    schema: z.strictObject({ name: z.string() }),
    async plan(_host, inputs, state, previous, stack) {
      calls.push({ state, previous, stack });
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
    const result = await provider.check!({ name: "old", ...baseKeys }, { name: "new", ...programKeys });
    expect(result.failures).toBeUndefined();
    expect(calls).toEqual([{ state: undefined, previous: { name: "old" }, stack: STACK }]);
  });

  it("in update: the state and the inputs the recorded outputs hold", async () => {
    const { provider, calls } = recordingProvider();
    await provider.update!("id", { name: "old", ...baseKeys, state: { n: 1 } }, { name: "new", ...programKeys });
    expect(calls).toEqual([{ state: { n: 1 }, previous: { name: "old" }, stack: STACK }]);
  });

  it("on a create (check with empty olds, then create) nothing; in read the state only", async () => {
    const { provider, calls } = recordingProvider();
    const news = { name: "new", ...programKeys };
    await provider.check!({}, news);
    await provider.create(news);
    await provider.read!("id", { name: "new", ...baseKeys, state: { n: 1 } });
    expect(calls).toEqual([
      { state: undefined, previous: undefined, stack: STACK },
      { state: undefined, previous: undefined, stack: STACK },
      { state: { n: 1 }, previous: undefined, stack: STACK },
    ]);
  });
});

describe("StoragePool's check, through the base", () => {
  const poolXml = (uuid: string) => `<pool type='dir'><name>images</name><uuid>${uuid}</uuid><target><path>/var/lib/libvirt/images</path></target></pool>`;
  const poolInfo = "Name:           images\nState:          running\nAutostart:      yes\n";
  const onHost = (uuid: string) => Object.assign(scripted, { pools: `\0images\0${poolXml(uuid)}\0${poolInfo}\0`, commands: [] });
  const news = { name: "images", path: "/var/lib/libvirt/images", ...programKeys };

  beforeEach(() => onHost("7c1d1e0a-5b8e-4a43-9f7e-2b1f0c6d9a11"));

  it("takes the pool of the name the stack recorded before as its own", async () => {
    const result = await storagePoolProvider.check!({ name: "images", path: "/var/lib/libvirt/images", ...baseKeys }, news);
    expect(result.failures).toBeUndefined();
  });

  it("refuses a pool of that name on a create, as one the stack did not make", async () => {
    const result = await storagePoolProvider.check!({}, news);
    expect(result.failures).toEqual([{ property: "(host)", reason: expect.stringContaining("this stack did not create it. Set adopt: true") }]);
  });

  it("takes a pool with the stack's UUID as its own on a create: its define ran, the state did not record it", async () => {
    onHost(stackUuid(STACK, "pool", "images")!);
    expect(await storagePoolProvider.check!({}, news)).toEqual({ inputs: expect.objectContaining({ plannedChanges: [] }) });
    onHost(stackUuid("vfio-host/prod@192.0.2.10", "pool", "images")!);
    expect((await storagePoolProvider.check!({}, news)).failures).toHaveLength(1);
  });
});
