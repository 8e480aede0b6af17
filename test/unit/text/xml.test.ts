import fc from "fast-check";
import { element, find, findAll, isXmlText, parseXml, renderXml, textOf, type XmlElement } from "../../../providers/text/xml";

const xmlString = fc.string({ unit: "binary", maxLength: 20 }).filter(isXmlText);
const nastyString = fc.oneof(
  xmlString,
  fc.constantFrom("&", "<", ">", '"', "'", "]]>", "&amp;", "\r\n", "\t", " ", "a\rb", "tab\there", "😀"),
);
const xmlName = fc.stringMatching(/^[a-z][a-z0-9._:-]{0,6}$/);

const tree: fc.Arbitrary<XmlElement> = fc.letrec<{ node: XmlElement }>((tie) => ({
  node: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.record({ name: xmlName, attributes: fc.dictionary(xmlName, nastyString, { maxKeys: 3 }), text: nastyString }).map((e) =>
      element(e.name, e.attributes, [e.text]),
    ),
    fc
      .record({ name: xmlName, attributes: fc.dictionary(xmlName, nastyString, { maxKeys: 3 }), children: fc.array(tie("node"), { maxLength: 3 }) })
      .map((e) => element(e.name, e.attributes, e.children)),
  ),
})).node;

describe("renderXml / parseXml", () => {
  it("round-trips any tree of elements, attributes and text, whatever characters they hold", () => {
    fc.assert(fc.property(tree, (t) => expect(parseXml(renderXml(t))).toEqual(t)));
  });

  it("escapes markup characters in text and attributes", () => {
    const xml = renderXml(element("description", { title: `a"b'c<d>&e\n` }, [`Fish & <Chips> "q" 'a'`]));
    expect(xml).toBe(`<description title="a&quot;b'c&lt;d&gt;&amp;e&#10;">Fish &amp; &lt;Chips&gt; "q" 'a'</description>\n`);
  });

  it("indents element content only, never next to text", () => {
    expect(renderXml(element("a", {}, [element("b", {}, ["x "]), element("c")]))).toBe("<a>\n  <b>x </b>\n  <c/>\n</a>\n");
  });

  it("refuses characters XML 1.0 cannot carry", () => {
    expect(() => renderXml(element("a", {}, ["bell\u0007"]))).toThrow(/forbids/);
  });

  it("reads what libvirt writes: single quotes, declarations, comments, CDATA and character references", () => {
    const root = parseXml(
      `<?xml version="1.0"?>\n<!-- WARNING: THIS IS AN AUTO-GENERATED FILE -->\n<domain type='kvm'>\n  <name>a&#38;b&#x3C;</name>\n` +
        `  <description><![CDATA[<raw> & ]]>tail</description>\n  <on_crash>destroy</on_crash>\n</domain>\n`,
    );
    expect(root.attributes).toEqual({ type: "kvm" });
    expect(textOf(find(root, "name"))).toBe("a&b<");
    expect(textOf(find(root, "description"))).toBe("<raw> & tail");
    expect(findAll(root, "on_crash")).toHaveLength(1);
  });

  it("normalises literal whitespace in attribute values and line ends in text", () => {
    const root = parseXml(`<a v="x\ty\nz">l1\r\nl2\rl3</a>`);
    expect(root.attributes.v).toBe("x y z");
    expect(textOf(root)).toBe("l1\nl2\nl3");
  });

  it.each([
    ["<a><b></a>", "expected </b>"],
    ["<a>&nbsp;</a>", 'bare "&"'],
    ['<!DOCTYPE a [<!ENTITY x "y">]><a/>', "DOCTYPE is not supported"],
    ["<a/><b/>", "content after the root element"],
    ["<a x='1' x='2'/>", "attribute x appears twice"],
    ["<a>&#0;</a>", "forbids"],
    ["<a", "expected"],
  ])("rejects %j with a located message", (xml, message) => {
    expect(() => parseXml(xml)).toThrow(/XML parse error at line \d+, column \d+/);
    expect(() => parseXml(xml)).toThrow(message);
  });
});
