// The UUID a stack gives each pool and domain it defines: name-based (RFC 9562 version 5), from the
// stack, its host and the object. libvirt gives what is defined without a UUID a random one, so a
// pool or domain that carries this UUID was defined by this stack. A run killed after `virsh define`
// but before Pulumi recorded the object (the pending create that `pulumi refresh
// --clear-pending-creates` drops) finds it again as its own, while one the user defined is still refused.
import { createHash } from "crypto";
import type { StackOnHost } from "../hostResource";

/** The namespace of this project's UUIDs: fixed for good, since changing it disowns what stacks defined. */
const NAMESPACE = "89073851-3833-44c3-9f79-acb746874a81";

/** RFC 9562 name-based UUID, version 5 (SHA-1), as Python's uuid.uuid5(namespace, name). */
export function nameBasedUuid(namespace: string, name: string): string {
  const hash = createHash("sha1").update(Buffer.from(namespace.replace(/-/g, ""), "hex")).update(name, "utf8").digest();
  hash[6] = (hash[6] & 0x0f) | 0x50;
  hash[8] = (hash[8] & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The UUID `stack` defines a pool or domain of this name with; undefined when the stack is not known. */
export function stackUuid(stack: StackOnHost, kind: "pool" | "domain", name: string): string | undefined {
  return stack === undefined ? undefined : nameBasedUuid(NAMESPACE, `${stack}\0${kind}\0${name}`);
}
