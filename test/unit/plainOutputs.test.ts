// The dynamic provider hands a resource's outputs to protobuf as they are: an optional state field
// left undefined used to fail `pulumi up` with "Unexpected struct type." after the host had changed.
import * as structproto from "google-protobuf/google/protobuf/struct_pb";
import { plainOutputs } from "../../providers/hostResource";

test("outputs with undefined fields pass protobuf's Struct conversion once plain", () => {
  const outputs = { state: { system: "initramfs-tools", featureSha256: undefined, owned: [{ token: "vfio", original: undefined }] }, stackName: undefined };
  expect(() => structproto.Struct.fromJavaScript(outputs as never)).toThrow("Unexpected struct type.");
  const plain = plainOutputs(outputs);
  expect(structproto.Struct.fromJavaScript(plain as never).toJavaScript()).toEqual({ state: { system: "initramfs-tools", owned: [{ token: "vfio" }] } });
});
