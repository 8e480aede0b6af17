import { nameBasedUuid, stackUuid } from "../../../providers/libvirt/stackUuid";

describe("stackUuid", () => {
  it("is RFC 9562's version 5 (Python: uuid.uuid5(uuid.NAMESPACE_DNS, 'www.example.com'))", () => {
    expect(nameBasedUuid("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "www.example.com")).toBe("2ed6657d-e927-568b-95e1-2665a8aea6a2");
  });

  it("is the same for the same stack, host, kind and name, and differs when any of them does", () => {
    const uuid = stackUuid("vfio-host/lab@127.0.0.1", "pool", "default");
    expect(uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(stackUuid("vfio-host/lab@127.0.0.1", "pool", "default")).toBe(uuid);
    const others = [
      stackUuid("vfio-host/prod@127.0.0.1", "pool", "default"),
      stackUuid("other/lab@127.0.0.1", "pool", "default"),
      stackUuid("vfio-host/lab@192.0.2.10", "pool", "default"),
      stackUuid("vfio-host/lab@127.0.0.1", "domain", "default"),
      stackUuid("vfio-host/lab@127.0.0.1", "pool", "images"),
    ];
    expect(new Set([uuid, ...others]).size).toBe(6);
  });

  it("is undefined when the stack is not known", () => {
    expect(stackUuid(undefined, "domain", "homeassistant")).toBeUndefined();
  });
});
