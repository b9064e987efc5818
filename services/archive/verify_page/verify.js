// hocba's public verification page: a verification bundle, or a PDF copy carrying one, checked in this browser.
//
// Nothing here trusts the server that sent the page: every signature is checked with WebCrypto (ES256 for the
// signers, the seal and the archive's checkpoints; ECDSA or RSA PKCS#1 v1.5 for the certification authorities above
// them), the record's bytes are rebuilt as RFC 8785 JSON, the log's proofs are RFC 9162 proofs over SHA-256, and every
// certificate chain must lead to the trust anchor shown on the page (compare its SHA-256 fingerprint with the one the
// department publishes, or drop the department's anchor file). What the server answers on line (a newer checkpoint,
// the version that supersedes this one) is checked the same way before it counts. A PDF copy's own PAdES signature
// (the CMS SignedData over its signed byte ranges, by the school's seal) is checked too, and a copy verifies only when
// it holds. A check that cannot be made says "not checked", never passed.
"use strict";

(() => {
  // --- bytes ------------------------------------------------------------------------------------------------------

  const utf8 = new TextEncoder();
  const subtle = globalThis.crypto && globalThis.crypto.subtle;

  function fromBase64(text) {
    const clean = text.replace(/-/g, "+").replace(/_/g, "/").replace(/[\s=]+/g, "");
    const raw = atob(clean + "=".repeat((4 - (clean.length % 4)) % 4));
    return Uint8Array.from(raw, (c) => c.charCodeAt(0));
  }

  function toBase64url(bytes) {
    let raw = "";
    for (const b of bytes) raw += String.fromCharCode(b);
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function fromHex(text) {
    if (typeof text !== "string" || !/^(?:[0-9a-fA-F]{2})*$/.test(text)) throw new Error("not hexadecimal");
    return Uint8Array.from(text.match(/../g) || [], (h) => parseInt(h, 16));
  }

  const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  const equalBytes = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  const sha256 = async (bytes) => new Uint8Array(await subtle.digest("SHA-256", bytes));

  // --- RFC 8785 JSON canonicalization -----------------------------------------------------------------------------

  function canonical(value) {
    if (value === null || typeof value === "boolean") return JSON.stringify(value);
    if (typeof value === "number") {
      if (!Number.isFinite(value)) throw new Error("RFC 8785 has no form for " + value);
      return JSON.stringify(value); // ECMAScript's Number-to-String: the form RFC 8785 §3.2.2.3 takes
    }
    if (typeof value === "string") {
      if (/(?:[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?:^|[^\uD800-\uDBFF])[\uDC00-\uDFFF])/.test(value)) {
        throw new Error("a lone surrogate has no RFC 8785 form");
      }
      return JSON.stringify(value);
    }
    if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
    if (typeof value === "object") {
      // Property names sorted by their UTF-16 code units, as JavaScript's default sort compares them (§3.2.3).
      const keys = Object.keys(value).sort();
      return "{" + keys.map((k) => canonical(k) + ":" + canonical(value[k])).join(",") + "}";
    }
    throw new Error("RFC 8785 has no form for a " + typeof value);
  }

  const canonicalBytes = (value) => utf8.encode(canonical(value));

  // --- RFC 9162 Merkle tree proofs --------------------------------------------------------------------------------

  const leafHash = (data) => sha256(concat(Uint8Array.of(0), data));
  const nodeHash = (left, right) => sha256(concat(Uint8Array.of(1), left, right));

  async function verifyInclusion(index, size, leaf, proof, root) {
    // RFC 9162 §2.1.3.2.
    if (!(index >= 0 && index < size) || leaf.length !== 32 || proof.some((p) => p.length !== 32)) return false;
    let fn = index;
    let sn = size - 1;
    let r = leaf;
    for (const p of proof) {
      if (sn === 0) return false;
      if (fn % 2 === 1 || fn === sn) {
        r = await nodeHash(p, r);
        if (fn % 2 === 0) {
          while (fn !== 0 && fn % 2 === 0) {
            fn = Math.floor(fn / 2);
            sn = Math.floor(sn / 2);
          }
        }
      } else {
        r = await nodeHash(r, p);
      }
      fn = Math.floor(fn / 2);
      sn = Math.floor(sn / 2);
    }
    return sn === 0 && equalBytes(r, root);
  }

  async function verifyConsistency(first, second, firstRoot, secondRoot, proof) {
    // RFC 9162 §2.1.4.2; a proof from size 0 proves nothing, equal sizes need equal roots and no proof.
    if (first <= 0 || first > second) return false;
    if (first === second) return proof.length === 0 && equalBytes(firstRoot, secondRoot);
    if (proof.length === 0 || proof.some((p) => p.length !== 32)) return false;
    const path = (first & (first - 1)) === 0 ? [firstRoot, ...proof] : proof;
    let fn = first - 1;
    let sn = second - 1;
    while (fn % 2 === 1) {
      fn = Math.floor(fn / 2);
      sn = Math.floor(sn / 2);
    }
    let fr = path[0];
    let sr = path[0];
    for (const c of path.slice(1)) {
      if (sn === 0) return false;
      if (fn % 2 === 1 || fn === sn) {
        fr = await nodeHash(c, fr);
        sr = await nodeHash(c, sr);
        if (fn % 2 === 0) {
          while (fn !== 0 && fn % 2 === 0) {
            fn = Math.floor(fn / 2);
            sn = Math.floor(sn / 2);
          }
        }
      } else {
        sr = await nodeHash(sr, c);
      }
      fn = Math.floor(fn / 2);
      sn = Math.floor(sn / 2);
    }
    return sn === 0 && equalBytes(fr, firstRoot) && equalBytes(sr, secondRoot);
  }

  // --- a DER reader: what certificates and CRLs need --------------------------------------------------------------

  function readDer(bytes, start = 0) {
    if (start + 2 > bytes.length) throw new Error("DER: truncated");
    const tag = bytes[start];
    let length = bytes[start + 1];
    let header = 2;
    if (length & 0x80) {
      const n = length & 0x7f;
      if (n === 0 || n > 4) throw new Error("DER: unsupported length");
      length = 0;
      for (let i = 0; i < n; i++) length = length * 256 + bytes[start + 2 + i];
      header += n;
    }
    const end = start + header + length;
    if (end > bytes.length) throw new Error("DER: truncated");
    return { tag, start, end, all: bytes.subarray(start, end), content: bytes.subarray(start + header, end) };
  }

  function derChildren(node) {
    const out = [];
    for (let at = 0; at < node.content.length; ) {
      const child = readDer(node.content, at);
      out.push(child);
      at = child.end;
    }
    return out;
  }

  function derOid(node) {
    const b = node.content;
    const parts = [Math.floor(b[0] / 40), b[0] % 40];
    let value = 0;
    for (let i = 1; i < b.length; i++) {
      value = value * 128 + (b[i] & 0x7f);
      if (!(b[i] & 0x80)) {
        parts.push(value);
        value = 0;
      }
    }
    return parts.join(".");
  }

  function derTime(node) {
    const text = new TextDecoder("latin1").decode(node.content);
    const m = /^(\d{2,4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
    if (!m) throw new Error("DER: unreadable time");
    let year = Number(m[1]);
    if (node.tag === 0x17) year += year < 50 ? 2000 : 1900; // UTCTime (RFC 5280 §4.1.2.5.1)
    return new Date(Date.UTC(year, m[2] - 1, m[3], m[4], m[5], m[6]));
  }

  const OID = {
    cn: "2.5.4.3", title: "2.5.4.12", uid: "0.9.2342.19200300.100.1.1", orgId: "2.5.4.97",
    basicConstraints: "2.5.29.19", keyUsage: "2.5.29.15", reasonCode: "2.5.29.21", invalidityDate: "2.5.29.24",
    ecPublicKey: "1.2.840.10045.2.1", rsaEncryption: "1.2.840.113549.1.1.1",
    p256: "1.2.840.10045.3.1.7", p384: "1.3.132.0.34", p521: "1.3.132.0.35",
  };
  const CURVES = { [OID.p256]: ["P-256", 32], [OID.p384]: ["P-384", 48], [OID.p521]: ["P-521", 66] };
  const SIGNATURE_ALGORITHMS = {
    "1.2.840.10045.4.3.2": ["ECDSA", "SHA-256"], "1.2.840.10045.4.3.3": ["ECDSA", "SHA-384"],
    "1.2.840.10045.4.3.4": ["ECDSA", "SHA-512"], "1.2.840.113549.1.1.11": ["RSASSA-PKCS1-v1_5", "SHA-256"],
    "1.2.840.113549.1.1.12": ["RSASSA-PKCS1-v1_5", "SHA-384"], "1.2.840.113549.1.1.13": ["RSASSA-PKCS1-v1_5", "SHA-512"],
  };

  function nameAttributes(node) {
    const out = {};
    for (const rdn of derChildren(node)) {
      for (const pair of derChildren(rdn)) {
        const [type, value] = derChildren(pair);
        out[derOid(type)] = new TextDecoder().decode(value.content);
      }
    }
    return out;
  }

  async function parseCertificate(der) {
    const [tbs, sigAlg, sigValue] = derChildren(readDer(der));
    const fields = derChildren(tbs);
    const at = fields[0].tag === 0xa0 ? 1 : 0;
    const [serial, , issuer, validity, subject, spki] = fields.slice(at, at + 6);
    const [notBefore, notAfter] = derChildren(validity).map(derTime);
    const [keyAlg] = derChildren(spki);
    const keyAlgParts = derChildren(keyAlg);
    const cert = {
      der, tbs: tbs.all, sigAlg: derOid(derChildren(sigAlg)[0]), signature: sigValue.content.subarray(1),
      serial: toHex(serial.content), issuerDer: issuer.all, subjectDer: subject.all, notBefore, notAfter,
      spki: spki.all, keyType: derOid(keyAlgParts[0]),
      curve: keyAlgParts[1] && keyAlgParts[1].tag === 0x06 ? derOid(keyAlgParts[1]) : null,
      subject: nameAttributes(subject), ca: false, keyUsage: null,
      fingerprint: toHex(await sha256(der)),
    };
    const extensions = fields.find((f) => f.tag === 0xa3);
    if (extensions) {
      for (const ext of derChildren(derChildren(extensions)[0])) {
        const parts = derChildren(ext);
        const id = derOid(parts[0]);
        const value = readDer(parts[parts.length - 1].content);
        if (id === OID.basicConstraints) {
          const inner = derChildren(value);
          cert.ca = inner.length > 0 && inner[0].tag === 0x01 && inner[0].content[0] !== 0;
        } else if (id === OID.keyUsage) {
          const bits = value.content;
          cert.keyUsage = { digitalSignature: !!(bits[1] & 0x80), nonRepudiation: !!(bits[1] & 0x40) };
        }
      }
    }
    cert.name = cert.subject[OID.cn] || "?";
    return cert;
  }

  async function publicKey(cert, forAlgorithm) {
    if (cert.keyType === OID.ecPublicKey && CURVES[cert.curve]) {
      return subtle.importKey("spki", cert.spki, { name: "ECDSA", namedCurve: CURVES[cert.curve][0] }, false, ["verify"]);
    }
    if (cert.keyType === OID.rsaEncryption && forAlgorithm && forAlgorithm[0] === "RSASSA-PKCS1-v1_5") {
      return subtle.importKey("spki", cert.spki, { name: "RSASSA-PKCS1-v1_5", hash: forAlgorithm[1] }, false, ["verify"]);
    }
    return null;
  }

  function ecdsaRaw(derSignature, size) {
    const [r, s] = derChildren(readDer(derSignature)).map((n) => {
      let v = n.content;
      while (v.length > size && v[0] === 0) v = v.subarray(1);
      return concat(new Uint8Array(size - v.length), v);
    });
    return concat(r, s);
  }

  // Did `issuer` sign these bytes with this algorithm (ECDSA of any curve WebCrypto has, or RSA PKCS#1 v1.5)?
  async function signedBy(issuer, algorithmOid, signature, data) {
    const algorithm = SIGNATURE_ALGORITHMS[algorithmOid];
    if (!algorithm) return false;
    try {
      const key = await publicKey(issuer, algorithm);
      if (!key) return false;
      if (algorithm[0] === "ECDSA") {
        if (issuer.keyType !== OID.ecPublicKey) return false;
        const raw = ecdsaRaw(signature, CURVES[issuer.curve][1]);
        return await subtle.verify({ name: "ECDSA", hash: algorithm[1] }, key, raw, data);
      }
      return await subtle.verify({ name: "RSASSA-PKCS1-v1_5" }, key, signature, data);
    } catch (e) {
      return false;
    }
  }

  const issuedBy = (cert, issuer) =>
    equalBytes(cert.issuerDer, issuer.subjectDer) && issuer.ca && signedBy(issuer, cert.sigAlg, cert.signature, cert.tbs);

  // --- CRLs -------------------------------------------------------------------------------------------------------

  async function parseCrls(pem) {
    const blocks = (pem || "").match(/-----BEGIN X509 CRL-----[\s\S]+?-----END X509 CRL-----/g) || [];
    const crls = [];
    for (const block of blocks) {
      const der = fromBase64(block.replace(/-----[A-Z0-9 ]+-----/g, ""));
      const [tbs, sigAlg, sigValue] = derChildren(readDer(der));
      const fields = derChildren(tbs);
      let i = fields[0].tag === 0x02 ? 1 : 0;
      i += 1; // signature algorithm
      const issuer = fields[i++];
      const thisUpdate = derTime(fields[i++]);
      let nextUpdate = null;
      if (fields[i] && (fields[i].tag === 0x17 || fields[i].tag === 0x18)) nextUpdate = derTime(fields[i++]);
      const revoked = new Map();
      if (fields[i] && fields[i].tag === 0x30) {
        for (const entry of derChildren(fields[i])) {
          const [serial, date, extensions] = derChildren(entry);
          const item = { at: derTime(date), reason: 0 };
          for (const ext of extensions ? derChildren(extensions) : []) {
            const parts = derChildren(ext);
            const id = derOid(parts[0]);
            const value = readDer(parts[parts.length - 1].content);
            if (id === OID.reasonCode) item.reason = value.content[0];
            if (id === OID.invalidityDate) item.at = new Date(Math.min(item.at, derTime(value)));
          }
          revoked.set(toHex(serial.content), item);
        }
      }
      crls.push({
        tbs: tbs.all, sigAlg: derOid(derChildren(sigAlg)[0]), signature: sigValue.content.subarray(1),
        issuerDer: issuer.all, thisUpdate, nextUpdate, revoked,
      });
    }
    return crls;
  }

  // --- checks, each in both languages -----------------------------------------------------------------------------

  const PASSED = "passed";
  const FAILED = "failed";
  const NOT_CHECKED = "not-checked";
  const INFORMATION = "information";

  class Section {
    constructor(vi, en) {
      this.vi = vi;
      this.en = en;
      this.lines = [];
    }
    // A check, in words for when it passed and (`viFailed`, `enFailed`) for when it did not; without them a
    // failed line says "not so:" before the words.
    add(ok, vi, en, viFailed, enFailed) {
      if (ok) this.lines.push({ mark: PASSED, vi, en });
      else this.lines.push({ mark: FAILED, vi: viFailed || "không đúng: " + vi, en: enFailed || "not so: " + en });
      return ok;
    }
    notChecked(vi, en) {
      this.lines.push({ mark: NOT_CHECKED, vi, en });
    }
    inform(vi, en) {
      this.lines.push({ mark: INFORMATION, vi, en });
    }
  }

  class Verdict {
    constructor() {
      this.sections = [];
      this.summary = null;
    }
    section(vi, en) {
      const s = new Section(vi, en);
      this.sections.push(s);
      return s;
    }
    get marks() {
      return this.sections.flatMap((s) => s.lines.map((l) => l.mark));
    }
    get ok() {
      return this.marks.includes(PASSED) && !this.marks.includes(FAILED);
    }
  }

  const VN_TIME = new Intl.DateTimeFormat("vi-VN", {
    timeZone: "Asia/Ho_Chi_Minh", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
  });
  const vnTime = (date) => VN_TIME.format(date) + " (giờ Việt Nam, UTC+7)";
  const ROLES = {
    homeroom_teacher: ["Giáo viên chủ nhiệm", "homeroom teacher"],
    principal: ["Hiệu trưởng", "principal"],
    school_seal: ["Dấu của nhà trường", "school seal"],
  };
  const SIGNING_ORDER = ["homeroom_teacher", "principal", "school_seal"];
  const COMPROMISE = new Set([1, 2, 10]);
  const ADMISSION_SKEW_MS = 10 * 60 * 1000;
  const FORMAT = "hocba.verification-bundle.v1";

  function header(jws) {
    return JSON.parse(new TextDecoder().decode(fromBase64(String(jws).split(".")[0])));
  }

  async function es256(cert, signingInput, signature) {
    if (cert.keyType !== OID.ecPublicKey || cert.curve !== OID.p256 || signature.length !== 64) return false;
    try {
      const key = await publicKey(cert);
      return await subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, signature, signingInput);
    } catch (e) {
      return false;
    }
  }

  // A detached compact JWS over `payload` by the first certificate of its x5c.
  async function detached(jws, payload) {
    const [protectedPart, empty, signature] = String(jws).split(".");
    if (empty !== "" || !signature) return false;
    const input = utf8.encode(protectedPart + "." + toBase64url(payload));
    const chain = await x5c(header(jws));
    return es256(chain[0], input, fromBase64(signature));
  }

  const x5cCache = new Map();
  async function x5c(fields) {
    if (!Array.isArray(fields.x5c) || fields.x5c.length === 0) throw new Error("no x5c");
    const key = fields.x5c.join(",");
    if (!x5cCache.has(key)) x5cCache.set(key, await Promise.all(fields.x5c.map((c) => parseCertificate(fromBase64(c)))));
    return x5cCache.get(key);
  }

  // The chain to the anchor, each link's signature, validity at `at`, key usage, revocation by the bundle's CRLs.
  async function checkChain(section, chain, at, purpose, ctx, trustedAt) {
    const leaf = chain[0];
    const usage = leaf.keyUsage;
    const needs = purpose === "signing" ? ["digitalSignature", "nonRepudiation"] : ["digitalSignature"];
    section.add(
      !!usage && needs.every((n) => usage[n]),
      "chứng thư số dùng đúng mục đích (" + needs.join(", ") + ")",
      "the certificate's key usage allows this use (" + needs.join(", ") + ")",
      "chứng thư số không dùng cho việc này (thiếu " + needs.join(", ") + ")",
      "the certificate is not for this use: its key usage lacks " + needs.join(", "),
    );
    let linked = true;
    for (let i = 0; i + 1 < chain.length; i++) {
      if (!(await issuedBy(chain[i], chain[i + 1]))) {
        linked = false;
        section.add(false, `'${chain[i].name}' không do '${chain[i + 1].name}' cấp`,
          `'${chain[i].name}' is not issued by '${chain[i + 1].name}'`);
      }
    }
    const top = chain[chain.length - 1];
    let path = chain;
    if (ctx.anchors.length === 0) {
      section.notChecked("chuỗi chứng thư đến gốc tin cậy: trang không có chứng thư gốc — hãy thả tệp gốc của Sở",
        "chain to the trust anchor: the page has no anchor — drop the department's anchor file");
      return;
    }
    let anchor = ctx.anchors.find((a) => equalBytes(top.der, a.der));
    if (!anchor) {
      for (const candidate of ctx.anchors) {
        if (await issuedBy(top, candidate)) {
          anchor = candidate;
          path = [...chain, anchor];
          break;
        }
      }
    }
    if (anchor) {
      section.add(linked, `dẫn đến gốc tin cậy '${anchor.name}'`, `chains to the trust anchor '${anchor.name}'`,
        `chuỗi chứng thư đến gốc '${anchor.name}' bị đứt`, `the chain to the trust anchor '${anchor.name}' is broken`);
    } else {
      section.add(false, `không dẫn đến gốc tin cậy (đỉnh chuỗi '${top.name}' thuộc CA khác)`,
        `the chain does not lead to the trust anchor (its top, '${top.name}', is from another CA)`);
      return;
    }
    const stale = path.filter((c) => !(c.notBefore <= at && at <= c.notAfter));
    section.add(stale.length === 0,
      stale.length === 0 ? `mọi chứng thư còn hiệu lực lúc ${vnTime(at)}`
        : `'${stale[0].name}' không còn hiệu lực lúc ${vnTime(at)}`,
      stale.length === 0 ? `every certificate in the chain was valid at ${at.toISOString()}`
        : `'${stale[0].name}' was not valid at ${at.toISOString()}`);
    for (let i = 0; i + 1 < path.length; i++) await checkRevocation(section, path[i], path[i + 1], at, ctx, trustedAt);
  }

  async function checkRevocation(section, cert, issuer, at, ctx, trustedAt) {
    let crl = null;
    for (const candidate of ctx.crls) {
      if (equalBytes(candidate.issuerDer, issuer.subjectDer)
          && (await signedBy(issuer, candidate.sigAlg, candidate.signature, candidate.tbs))
          && (!crl || candidate.thisUpdate > crl.thisUpdate)) crl = candidate;
    }
    if (!crl) {
      // As `hocba verify` judges it: a bundle stripped of its CRL must not pass for one whose signer is not revoked.
      section.add(false, "", "", `gói không mang CRL của '${issuer.name}': không biết '${cert.name}' có bị thu hồi không`,
        `the bundle carries no CRL of '${issuer.name}': cannot tell whether '${cert.name}' is revoked`);
      return;
    }
    if (crl.nextUpdate && crl.nextUpdate < new Date()) {
      section.add(false, `CRL của '${issuer.name}' đã quá hạn cập nhật (${vnTime(crl.nextUpdate)})`,
        `the CRL of '${issuer.name}' is past its nextUpdate (${crl.nextUpdate.toISOString()})`);
    }
    const entry = crl.revoked.get(cert.serial);
    if (!entry) {
      section.add(true, `'${cert.name}' không bị thu hồi`, `'${cert.name}' is not revoked`);
    } else if (entry.at <= at) {
      section.add(false, `'${cert.name}' bị thu hồi ${vnTime(entry.at)}, trước lúc ký`,
        `'${cert.name}' was revoked at ${entry.at.toISOString()}, before the signing time`);
    } else if (COMPROMISE.has(entry.reason)) {
      const ok = !!trustedAt && trustedAt < entry.at;
      section.add(ok, `'${cert.name}' bị thu hồi vì lộ khóa; ${ok ? "thời điểm lưu trữ đã chứng minh chữ ký có trước" : "không có thời điểm tin cậy chứng minh chữ ký có trước"}`,
        `'${cert.name}' was revoked for a key compromise; ${ok ? "the proven admission time shows the signature is older" : "no trusted time proves the signature older"}`);
    } else {
      section.add(true, `'${cert.name}' bị thu hồi sau lúc ký (${vnTime(entry.at)})`,
        `'${cert.name}' was revoked after the signing time (${entry.at.toISOString()})`);
    }
  }

  function readBundle(data) {
    const problems = [];
    if (!data || typeof data !== "object" || Array.isArray(data)) return ["not a JSON object"];
    if (data.format !== FORMAT) return [`its format is ${JSON.stringify(data.format)}, not ${FORMAT}`];
    const need = [["record", "object"], ["record.document", "object"], ["signatures", "array"], ["log", "object"],
      ["log.origin", "string"], ["log.leaf_index", "number"], ["log.archived_at", "string"], ["log.leaf_hash", "string"],
      ["log.tree_size", "number"], ["log.inclusion_proof", "array"], ["checkpoint", "object"]];
    for (const [name, kind] of need) {
      let v = data;
      for (const k of name.split(".")) v = v && typeof v === "object" ? v[k] : undefined;
      const found = Array.isArray(v) ? "array" : v === null ? "null" : typeof v;
      if (found !== kind) problems.push(`\`${name}\` is missing or not a${kind === "array" ? "n" : ""} ${kind}`);
    }
    return problems;
  }

  // Check a bundle: record digest, signatures and chains, order, content origin, the log entry, inclusion, checkpoint.
  async function verifyBundle(bundle, ctx, verdict) {
    const record = verdict.section("Hồ sơ", "Record");
    const problems = readBundle(bundle);
    if (problems.length) {
      record.add(false, "tệp không phải gói xác minh hocba: " + problems[0], "not a hocba verification bundle: " + problems[0]);
      return null;
    }
    const rec = bundle.record;
    const document = rec.document;
    let content;
    try {
      content = canonicalBytes(document);
    } catch (e) {
      record.add(false, "nội dung hồ sơ không viết được theo RFC 8785", "the record cannot be written as RFC 8785 JSON");
      return null;
    }
    const digest = toHex(await sha256(content));
    const headers = bundle.signatures.map((s) => {
      try {
        return header(s);
      } catch (e) {
        return {};
      }
    });
    const signed = new Set(headers.map((h) => h.digest).filter(Boolean));
    if (signed.size === 0) {
      record.notChecked("mã băm hồ sơ: không chữ ký nào nêu mã băm", "the record's digest: no signature states one");
    } else {
      record.add(signed.size === 1 && signed.has(digest),
        `mã băm SHA-256 của hồ sơ (JSON RFC 8785) ${digest.slice(0, 16)}… khớp với mã băm đã ký`,
        `the record's SHA-256 digest (RFC 8785 JSON) ${digest.slice(0, 16)}… is the one its signatures sign`,
        `mã băm của hồ sơ (${digest.slice(0, 16)}…) KHÁC mã băm đã ký: hồ sơ đã bị sửa sau khi ký`,
        `the record's digest (${digest.slice(0, 16)}…) is NOT the one its signatures sign: the record was changed after signing`);
    }
    const roles = headers.map((h) => h.role);
    const inOrder = roles.length === SIGNING_ORDER.length && roles.every((r, i) => r === SIGNING_ORDER[i]);
    record.add(inOrder, "ký đúng thứ tự: giáo viên chủ nhiệm → hiệu trưởng → dấu nhà trường",
      "signed in the required order: homeroom teacher → principal → school seal",
      "thiếu chữ ký hoặc sai thứ tự (cần: giáo viên chủ nhiệm → hiệu trưởng → dấu nhà trường)",
      "a signature is missing or out of order (needed: homeroom teacher → principal → school seal)");

    // Where it sits in the log: proven before the signatures, since a proven admission time weighs on revocations.
    const log = await checkLog(bundle, content, ctx, verdict);
    const signers = [];
    let previous = null;
    for (let i = 0; i < bundle.signatures.length; i++) {
      const jws = bundle.signatures[i];
      const h = headers[i];
      const [vi, en] = ROLES[h.role] || [String(h.role), String(h.role)];
      const section = verdict.section("Chữ ký: " + vi, "Signature: " + en);
      try {
        const chain = await x5c(h);
        const at = new Date(h.signed_at);
        if (h.alg !== "ES256" || isNaN(at)) throw new Error("header");
        signers.push({ role: h.role, name: chain[0].name, at });
        section.inform(`${chain[0].name}, ký lúc ${vnTime(at)}`, `${chain[0].name}, signed at ${at.toISOString()}`);
        section.add(h.record_id === rec.record_id && h.version === rec.version && h.digest === digest,
          "chữ ký dành cho đúng hồ sơ, phiên bản và nội dung này", "it is for this record, version and content",
          "chữ ký dành cho hồ sơ, phiên bản hay nội dung khác", "it is for another record, version or content");
        const prev = previous === null ? undefined : toHex(await sha256(utf8.encode(previous)));
        section.add((h.prev ?? null) === (prev ?? null), "nối đúng chữ ký trước nó", "it names the signature before it",
          "không nối đúng chữ ký trước nó: chuỗi chữ ký bị cắt hay đảo", "it does not name the signature before it: the chain was cut or reordered");
        section.add(await detached(jws, content), "chữ ký ES256 trên JSON chuẩn hóa của hồ sơ hợp lệ",
          "the ES256 signature over the record's canonical JSON is valid",
          "chữ ký ES256 KHÔNG hợp lệ trên JSON chuẩn hóa của hồ sơ", "the ES256 signature does NOT verify over the record's canonical JSON");
        section.add(chain[0].subject[OID.title] === h.role && chain[0].subject[OID.orgId] === rec.school_code,
          "chứng thư số đúng vai trò và đúng trường", "the certificate is for this role at this school",
          "chứng thư số của vai trò hay trường khác", "the certificate is for another role or school");
        await checkChain(section, chain, at, "signing", ctx, log.admittedAt);
        if (log.admittedAt) {
          section.add(at.getTime() <= log.admittedAt.getTime() + ADMISSION_SKEW_MS,
            "ký trước khi kho lưu trữ tiếp nhận", "signed before the archive admitted the version",
            "thời điểm ký nêu ra muộn hơn lúc kho tiếp nhận", "the stated signing time is after the archive admitted the version");
        }
      } catch (e) {
        section.add(false, "không đọc được chữ ký hay chứng thư số", "the signature or its certificate cannot be read");
      }
      previous = jws;
    }
    await checkOrigin(bundle, digest, ctx, log.admittedAt, verdict);
    verdict.sections.push(verdict.sections.splice(verdict.sections.indexOf(log.section), 1)[0]);
    return { digest, signers, admittedAt: log.admittedAt, content, leaf: log.leaf };
  }

  async function checkOrigin(bundle, digest, ctx, admittedAt, verdict) {
    const rec = bundle.record;
    const section = verdict.section("Nguồn nội dung", "Where the content comes from");
    const amendment = rec.document.amendment;
    if (rec.seal) {
      const claims = {
        record_id: rec.record_id, version: rec.version, school_code: rec.school_code,
        school_year: rec.school_year, student_ref: rec.student_ref, digest,
      };
      try {
        const h = header(rec.seal);
        const chain = await x5c(h);
        const ok = h.typ === "hocba-seal" && chain[0].subject[OID.uid] === "svc-grades"
          && (await detached(rec.seal, canonicalBytes(claims)));
        section.add(ok, "nội dung do dịch vụ điểm (svc-grades) niêm phong", "content sealed by grades (svc-grades)",
          "dấu niêm phong của dịch vụ điểm không khớp nội dung này", "grades' seal does not verify over this content");
        await checkChain(section, chain, admittedAt || new Date(), "seal", ctx, admittedAt);
      } catch (e) {
        section.add(false, "không đọc được dấu niêm phong của dịch vụ điểm", "grades' seal cannot be read");
      }
    } else if (amendment && Number.isInteger(amendment.supersedes) && amendment.requested_by) {
      section.add(true, `bản điều chỉnh do trường yêu cầu, thay phiên bản ${amendment.supersedes}; chữ ký của trường bảo đảm`,
        `an amendment requested by the school, replacing version ${amendment.supersedes}; the school's signatures vouch for it`);
    } else {
      section.add(false, "nội dung không có dấu niêm phong và không phải bản điều chỉnh",
        "the content carries no seal by grades and is not an amendment");
    }
  }

  async function checkCheckpoint(section, checkpoint, ctx) {
    const body = canonicalBytes({
      origin: checkpoint.origin, tree_size: checkpoint.tree_size, root_hash: checkpoint.root_hash,
      issued_at: checkpoint.issued_at,
    });
    try {
      const h = header(checkpoint.signature);
      const chain = await x5c(h);
      const issued = new Date(checkpoint.issued_at);
      const ok = h.alg === "ES256" && h.typ === "hocba-checkpoint" && chain[0].subject[OID.title] === "archive"
        && !isNaN(issued) && (await detached(checkpoint.signature, body));
      section.add(ok, `checkpoint ${checkpoint.tree_size} mục có chữ ký hợp lệ của kho lưu trữ`,
        `the checkpoint of size ${checkpoint.tree_size} is validly signed by the archive`,
        `chữ ký của checkpoint ${checkpoint.tree_size} mục KHÔNG hợp lệ`,
        `the signature of the checkpoint of size ${checkpoint.tree_size} does NOT verify`);
      await checkChain(section, chain, issued, "checkpoint", ctx, null);
      return ok;
    } catch (e) {
      section.add(false, "không đọc được chữ ký của checkpoint", "the checkpoint's signature cannot be read");
      return false;
    }
  }

  async function checkLog(bundle, content, ctx, verdict) {
    const rec = bundle.record;
    const log = bundle.log;
    const checkpoint = bundle.checkpoint;
    const section = verdict.section(`Nhật ký lưu trữ '${log.origin}'`, `Archive log '${log.origin}'`);
    const entry = {
      archived_at: log.archived_at, document: rec.document, record_id: rec.record_id, school_code: rec.school_code,
      school_year: rec.school_year, seq: log.leaf_index, signatures: bundle.signatures, student_ref: rec.student_ref,
      version: rec.version, ...(rec.seal !== undefined ? { seal: rec.seal } : {}),
    };
    const leaf = await leafHash(canonicalBytes(entry));
    const leafOk = section.add(toHex(leaf) === String(log.leaf_hash).toLowerCase(),
      `mã băm mục ${log.leaf_index} khớp hồ sơ và các chữ ký`,
      `the entry's leaf hash matches the record and signatures (entry ${log.leaf_index})`,
      `mã băm mục ${log.leaf_index} KHÔNG khớp hồ sơ và các chữ ký trong gói`,
      `the entry's leaf hash does NOT match the record and signatures in the bundle`);
    let included = false;
    try {
      included = log.tree_size === checkpoint.tree_size && (await verifyInclusion(log.leaf_index, log.tree_size, leaf,
        log.inclusion_proof.map(fromHex), fromHex(checkpoint.root_hash)));
    } catch (e) {
      included = false;
    }
    section.add(included, `bằng chứng RFC 9162 đưa mục ${log.leaf_index} vào cây ${checkpoint.tree_size} mục của checkpoint`,
      `the RFC 9162 inclusion proof puts entry ${log.leaf_index} in the checkpoint's tree of ${checkpoint.tree_size}`,
      "bằng chứng RFC 9162 KHÔNG dẫn từ mục này đến gốc của checkpoint",
      "the RFC 9162 inclusion proof does NOT lead from this entry to the checkpoint's root");
    const signedCheckpoint = await checkCheckpoint(section, checkpoint, ctx);
    if (Array.isArray(bundle.checkpoint_timestamps) && bundle.checkpoint_timestamps.length) {
      section.notChecked("dấu thời gian RFC 3161 của checkpoint: trang không kiểm tra (lệnh hocba verify kiểm tra)",
        "the checkpoint's RFC 3161 timestamps: not checked on this page (hocba verify checks them)");
    }
    let admittedAt = null;
    const archived = new Date(log.archived_at);
    if (leafOk && included && signedCheckpoint) {
      if (section.add(!isNaN(archived) && archived <= new Date(checkpoint.issued_at),
        `kho tiếp nhận lúc ${isNaN(archived) ? "?" : vnTime(archived)} (checkpoint đã ký chứng minh)`,
        `the archive admitted this version at ${isNaN(archived) ? "?" : archived.toISOString()} (proven by the signed checkpoint)`,
        "thời điểm lưu trữ nêu ra muộn hơn checkpoint bao gồm nó",
        "the stated admission time is after the checkpoint that covers it")) {
        admittedAt = archived;
      }
    }
    return { section, admittedAt, signedCheckpoint, leaf };
  }

  // The log as it is now extends the log the bundle's checkpoint signed (asked of the archive, checked here).
  async function checkConsistency(bundle, ctx, verdict) {
    const section = verdict.sections.find((s) => s.en.startsWith("Archive log")) || verdict.section("Nhật ký", "Log");
    const size = bundle.checkpoint.tree_size;
    let answer;
    try {
      const response = await fetch(`/v1/log/consistency?first=${encodeURIComponent(size)}`, { cache: "no-store" });
      if (!response.ok) throw new Error(String(response.status));
      answer = await response.json();
    } catch (e) {
      section.notChecked("nhật ký hiện nay có nối tiếp checkpoint này không: không hỏi được kho lưu trữ",
        "whether today's log extends this checkpoint: the archive could not be asked");
      return;
    }
    const latest = answer.checkpoints && answer.checkpoints[1];
    if (!latest) {
      section.notChecked("nhật ký hiện nay: kho không gửi checkpoint mới nhất", "today's log: no latest checkpoint came");
      return;
    }
    const latestOk = await checkCheckpoint(section, latest, ctx);
    let consistent = false;
    try {
      consistent = latestOk && answer.first === size && answer.second === latest.tree_size
        && answer.first_root === bundle.checkpoint.root_hash && answer.second_root === latest.root_hash
        && (await verifyConsistency(size, latest.tree_size, fromHex(bundle.checkpoint.root_hash),
          fromHex(latest.root_hash), answer.proof.map(fromHex)));
    } catch (e) {
      consistent = false;
    }
    section.add(consistent, `bằng chứng nhất quán RFC 9162: nhật ký ${latest.tree_size} mục hiện nay nối tiếp checkpoint ${size} mục (không bị viết lại)`,
      `the RFC 9162 consistency proof: today's log of ${latest.tree_size} entries extends the checkpoint of ${size} (not rewritten)`,
      `nhật ký hiện nay KHÔNG chứng minh được là nối tiếp checkpoint ${size} mục`,
      `today's log is NOT shown to extend the checkpoint of ${size}: the consistency proof fails`);
  }

  // Current or superseded: the bundle's `status` is not signed, so it counts only as far as signed evidence bears
  // it out: the superseding version's own bundle, whose signed amendment names this version.
  async function checkStatus(bundle, evidence, ctx, verdict) {
    const section = verdict.section("Hiệu lực", "Current or superseded");
    const stated = (bundle.status || {}).superseded_by || null;
    if (evidence === undefined) {
      section.notChecked(
        stated ? `gói nêu (không có chữ ký) đã được thay bởi phiên bản ${stated}: không hỏi được kho lưu trữ`
          : "gói nêu (không có chữ ký) đây là phiên bản hiện hành: không hỏi được kho lưu trữ",
        stated ? `the bundle states (unsigned) that version ${stated} supersedes it: the archive could not be asked`
          : "the bundle states (unsigned) that this is the current version: the archive could not be asked");
      return { state: stated ? "superseded?" : "current?", by: stated };
    }
    const later = evidence.superseded_by;
    let proven = null;
    if (later) {
      const inner = new Verdict();
      await verifyBundle(later, ctx, inner);
      const amendment = later.record && later.record.document && later.record.document.amendment;
      if (inner.ok && later.record.record_id === bundle.record.record_id && amendment
          && amendment.supersedes === bundle.record.version) proven = later.record.version;
      else {
        section.add(false, "bằng chứng về phiên bản thay thế không kiểm chứng được",
          "the evidence of a superseding version does not verify");
        return { state: "unknown" };
      }
    }
    if (proven) {
      section.add(stated === proven,
        `ĐÃ ĐƯỢC THAY THẾ bởi phiên bản ${proven} (bản điều chỉnh có chữ ký nêu phiên bản này)` + (stated === proven ? "" : `; gói lại nêu ${stated || "hiện hành"}`),
        `SUPERSEDED by version ${proven} (its signed amendment names this version)` + (stated === proven ? "" : `; the bundle states ${stated || "current"}`));
      return { state: "superseded", by: proven };
    }
    if (stated) {
      section.add(false, `gói nêu đã được thay bởi phiên bản ${stated}, nhưng không có phiên bản nào có chữ ký chứng minh`,
        `the bundle states version ${stated} supersedes it, but no signed version bears that out`);
      return { state: "unknown" };
    }
    section.inform("hiện hành: kho lưu trữ không biết phiên bản nào mới hơn (lời của kho, không có chữ ký)",
      "current: the archive knows no later version (the archive's word, not signed)");
    return { state: "current" };
  }

  // The QR code: the copy's address, `#`, the archive's compact JWS (typ hocba-copy) stating the entry's index, leaf
  // hash, checkpoint size and root, and the copy's time (older copies state more: record, version, school, digest,
  // origin, admission time; each is compared too).
  async function checkQr(qr, bundle, result, ctx, verdict) {
    const section = verdict.section("Mã QR của bản sao", "The copy's QR code");
    const cut = qr.lastIndexOf("#");
    const address = cut >= 0 ? qr.slice(0, cut) : null;
    const payload = cut >= 0 ? qr.slice(cut + 1) : qr;
    try {
      const [p0, p1, p2] = payload.split(".");
      const h = JSON.parse(new TextDecoder().decode(fromBase64(p0)));
      const claims = JSON.parse(new TextDecoder().decode(fromBase64(p1)));
      const chain = await x5c(header(bundle.checkpoint.signature));
      const signer = chain.find((c) => c.fingerprint === h.kid);
      const issued = new Date(claims.c);
      const ok = !!signer && h.alg === "ES256" && h.typ === "hocba-copy" && !isNaN(issued)
        && (await es256(signer, utf8.encode(p0 + "." + p1), fromBase64(p2)));
      section.add(ok, "nội dung QR có chữ ký của kho lưu trữ", "the QR payload is signed by the archive",
        "chữ ký trong mã QR KHÔNG hợp lệ", "the QR payload's signature does NOT verify");
      if (!ok) return;
      await checkChain(section, [signer, ...chain.slice(chain.indexOf(signer) + 1)], issued, "checkpoint", ctx, null);
      const leaf = toBase64url(result.leaf);
      const expected = {
        i: bundle.log.leaf_index, h: leaf, n: bundle.checkpoint.tree_size,
        t: toBase64url(fromHex(bundle.checkpoint.root_hash)),
      };
      const older = {
        o: bundle.log.origin, r: bundle.record.record_id, v: bundle.record.version, s: bundle.record.school_code,
        d: toBase64url(fromHex(result.digest)), a: bundle.log.archived_at,
      };
      for (const k of Object.keys(older)) if (k in claims) expected[k] = older[k];
      const differs = Object.keys(expected).filter((k) => claims[k] !== expected[k]);
      section.add(differs.length === 0,
        differs.length ? `QR và gói xác minh khác nhau ở: ${differs.join(", ")}` : "QR nêu đúng mục nhật ký, mã băm và checkpoint của hồ sơ này",
        differs.length ? `the QR code and the bundle disagree on ${differs.join(", ")}` : "the QR states this record's log entry, leaf hash and checkpoint");
      if (address !== null) {
        const m = /\/v\/(\d+)\.([A-Za-z0-9_-]+)$/.exec(address);
        section.add(!!m && Number(m[1]) === bundle.log.leaf_index && m[2] === leaf.slice(0, 16),
          "địa chỉ trong QR dẫn đến đúng mục này", "the QR's address names this entry",
          "địa chỉ trong QR dẫn đến mục khác", "the QR's address names another entry");
      }
    } catch (e) {
      section.add(false, "nội dung QR không đọc được", "the QR payload cannot be read");
    }
  }

  // --- a PDF copy: its attached files -----------------------------------------------------------------------------

  async function inflate(bytes) {
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  async function attachments(pdf) {
    // Each object whose dictionary says /Type /EmbeddedFile: its stream, inflated when FlateDecode. (A stream is never
    // inside an object stream, so this finds them in any PDF, incremental updates included.)
    const text = new TextDecoder("latin1").decode(pdf);
    const found = [];
    const objects = /\d+\s+\d+\s+obj\b/g;
    let m;
    while ((m = objects.exec(text))) {
      const streamStart = /(>>\s*)stream(\r\n|\n|\r)/g;
      streamStart.lastIndex = m.index;
      const s = streamStart.exec(text);
      const nextObject = text.indexOf("endobj", m.index);
      if (!s || (nextObject >= 0 && nextObject < s.index)) continue;
      const dictionary = text.slice(m.index, s.index + s[1].length);
      if (!/\/Type\s*\/EmbeddedFile\b/.test(dictionary)) continue;
      const start = s.index + s[0].length;
      const direct = /\/Length\s+(\d+)(?!\s+\d+\s+R)/.exec(dictionary);
      let end = direct ? start + Number(direct[1]) : text.indexOf("endstream", start);
      if (!direct) while (end > start && (text[end - 1] === "\n" || text[end - 1] === "\r")) end--;
      let data = pdf.subarray(start, end);
      try {
        if (/\/Filter\s*(?:\[\s*)?\/FlateDecode/.test(dictionary)) data = await inflate(data);
        found.push(data);
      } catch (e) {
        /* an attachment that does not inflate: not one of ours */
      }
    }
    return found;
  }

  async function readPdf(pdf) {
    let bundle = null;
    let qr = null;
    for (const data of await attachments(signedRevision(pdf))) {
      const text = new TextDecoder().decode(data).trim();
      if (/^(?:\S*#)?[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(text)) qr = text;
      else {
        try {
          const parsed = JSON.parse(text);
          if (parsed && parsed.format === FORMAT) bundle = parsed;
        } catch (e) {
          /* another attachment */
        }
      }
    }
    return { bundle, qr };
  }

  // --- a PDF copy: its own PAdES signature ------------------------------------------------------------------------

  const CMS = {
    signedData: "1.2.840.113549.1.7.2", data: "1.2.840.113549.1.7.1", contentType: "1.2.840.113549.1.9.3",
    messageDigest: "1.2.840.113549.1.9.4", sha256: "2.16.840.1.101.3.4.2.1",
  };

  // The PDF's signature dictionaries (/ByteRange [a b c d] and /Contents <hex>) and which one signs the most of the
  // file: the last signature, whose signed revision ends at c + d.
  function pdfSignature(pdf) {
    const text = new TextDecoder("latin1").decode(pdf);
    const found = [];
    const ranges = /\/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]/g;
    let m;
    while ((m = ranges.exec(text))) found.push({ at: m.index, range: m.slice(1, 5).map(Number) });
    if (found.length === 0) return { count: 0, text };
    const last = found.reduce((best, s) => (s.range[2] + s.range[3] > best.range[2] + best.range[3] ? s : best));
    const [a, b, c, d] = last.range;
    return { count: found.length, text, range: last.range, end: c + d, sane: a === 0 && b < c && c + d <= pdf.length };
  }

  // The bytes a reader of the PDF is shown: the signed revision when the file is signed (its attachments are read
  // from there, so a file appended after signing cannot stand in for the signed one), or the whole file.
  function signedRevision(pdf) {
    const sig = pdfSignature(pdf);
    return sig.count && sig.sane ? pdf.subarray(0, sig.end) : pdf;
  }

  // What may follow the signed revision: incremental updates that add validation data (PAdES B-LT's DSS) — new
  // objects, the catalog again with /DSS added and nothing else changed, the XMP metadata again, the same /Root.
  // An update that redefines a page, its content, an attachment or the catalog otherwise changes what the copy shows.
  function appendedUpdate(text, end) {
    const signed = text.slice(0, end);
    const tail = text.slice(end);
    if (/\/Type\s*\/(?:ObjStm|XRef)\b/.test(tail)) return { ok: false, why: "compressed" };
    const roots = [...signed.matchAll(/\/Root\s+(\d+)\s+(\d+)\s+R/g)].map((r) => r[1]);
    const root = roots.at(-1);
    if ([...tail.matchAll(/\/Root\s+(\d+)\s+(\d+)\s+R/g)].some((r) => r[1] !== root)) return { ok: false, why: "root" };
    const squeeze = (s) => s.replace(/\s+/g, " ").trim();
    const objects = /(?:^|[\r\n\s])(\d+)\s+(\d+)\s+obj\b([\s\S]*?)\bendobj/g;
    let m;
    const changed = [];
    let added = 0;
    while ((m = objects.exec(tail))) {
      const [, number, generation, body] = m;
      const before = new RegExp(`(?:^|[\\r\\n\\s])${number}\\s+${generation}\\s+obj\\b([\\s\\S]*?)\\bendobj`, "g");
      const earlier = [...signed.matchAll(before)].at(-1);
      if (!earlier) {
        added++;
        continue;
      }
      const dictionary = body.split(/\bstream(?:\r\n|\n|\r)/)[0];
      if (number === root) {
        const withoutDss = squeeze(body.replace(/\/DSS\s+\d+\s+\d+\s+R/, ""));
        if (withoutDss === squeeze(earlier[1])) continue;
      } else if (/\/Type\s*\/Metadata\b/.test(dictionary) && /\/Subtype\s*\/XML\b/.test(dictionary)) {
        continue;
      }
      changed.push(number);
    }
    return { ok: changed.length === 0, changed, added, why: changed.length ? "changed" : null };
  }

  function signedAttribute(attributes, oid) {
    for (const attribute of derChildren(attributes)) {
      const [type, values] = derChildren(attribute);
      if (derOid(type) === oid) return derChildren(values);
    }
    return null;
  }

  // The CMS SignedData in /Contents: the signer's certificate (by issuer and serial number), the certificates it
  // carries, its signed attributes (DER, [0] IMPLICIT), digest algorithm, signature algorithm and value.
  async function readCms(der) {
    const info = readDer(der);
    const [type, wrapped] = derChildren(info);
    if (derOid(type) !== CMS.signedData || wrapped.tag !== 0xa0) throw new Error("not CMS SignedData");
    const parts = derChildren(derChildren(wrapped)[0]);
    const carried = parts.find((p) => p.tag === 0xa0);
    const certificates = carried ? await Promise.all(derChildren(carried).map((c) => parseCertificate(c.all))) : [];
    const [signer] = derChildren(parts[parts.length - 1]);
    const fields = derChildren(signer);
    const [, sid, digestAlgorithm] = fields;
    const attributes = fields.find((f) => f.tag === 0xa0);
    if (!attributes) throw new Error("no signed attributes");
    const rest = fields.slice(fields.indexOf(attributes) + 1);
    const [signatureAlgorithm, signatureValue] = rest;
    let cert = null;
    if (sid.tag === 0x30) {
      const [issuer, serial] = derChildren(sid);
      cert = certificates.find((c) => equalBytes(c.issuerDer, issuer.all) && c.serial === toHex(serial.content));
    }
    return {
      cert, certificates, attributes, digestAlgorithm: derOid(derChildren(digestAlgorithm)[0]),
      signatureAlgorithm: derOid(derChildren(signatureAlgorithm)[0]), signature: signatureValue.content,
      end: info.end,
    };
  }

  // The signer's certificate, then each carried certificate that issued the one before it.
  function cmsChain(cms) {
    const chain = [cms.cert];
    for (;;) {
      const top = chain[chain.length - 1];
      const next = cms.certificates.find((c) => !chain.includes(c) && equalBytes(c.subjectDer, top.issuerDer));
      if (!next || equalBytes(top.subjectDer, top.issuerDer)) return chain;
      chain.push(next);
    }
  }

  // When the signature dictionary says it was signed (/M, inside the signed bytes; stated, not proven).
  function pdfDate(text, from, to) {
    const m = /\/M\s*\(D(?::|\\072)?(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})/.exec(text.slice(from, to));
    return m ? new Date(Date.UTC(m[1], m[2] - 1, m[3], m[4], m[5], m[6])) : null;
  }

  // The PDF's own signature (PAdES): the byte range, the SHA-256 of the signed bytes against the CMS messageDigest,
  // the seal's ECDSA signature over the signed attributes, its chain to the anchor, the record's school's seal, and
  // what was appended after signing.
  async function checkPdfSignature(pdf, bundle, ctx, verdict) {
    const section = verdict.section("Chữ ký của tệp PDF", "The PDF's signature");
    try {
      await pdfSignatureChecks(section, pdf, bundle, ctx);
    } catch (e) {
      section.add(false, "", "", "không đọc được chữ ký của tệp PDF", "the PDF's signature cannot be read");
    }
  }

  async function pdfSignatureChecks(section, pdf, bundle, ctx) {
    const sig = pdfSignature(pdf);
    if (!sig.count) {
      section.add(false, "", "", "tệp PDF không có chữ ký số: trang in có thể đã bị sửa mà không ai thấy",
        "the PDF carries no signature: its printed page could have been changed unseen");
      return;
    }
    const [a, b, c, d] = sig.range;
    const gap = sig.sane ? sig.text.slice(b, c) : "";
    const inPlace = sig.sane && /^<[0-9a-fA-F]*>$/.test(gap) && /\/Contents\s*$/.test(sig.text.slice(Math.max(0, b - 64), b));
    if (!section.add(inPlace, `phạm vi ký /ByteRange [${a} ${b} ${c} ${d}] bắt đầu từ đầu tệp, chỉ chừa đúng chuỗi /Contents`,
      `the signed /ByteRange [${a} ${b} ${c} ${d}] starts at the file's first byte and leaves out exactly the /Contents string`,
      `phạm vi ký /ByteRange [${a} ${b} ${c} ${d}] không hợp lệ: không bắt đầu từ đầu tệp hay chừa ra thứ khác ngoài /Contents`,
      `the signed /ByteRange [${a} ${b} ${c} ${d}] is not sound: it does not start at the file's first byte, or leaves out more than the /Contents string`)) {
      return;
    }
    if (sig.count > 1) {
      section.inform(`tệp có ${sig.count} chữ ký; kiểm tra chữ ký phủ nhiều nhất của tệp`,
        `the file has ${sig.count} signatures; the one covering the most of it is checked`);
    }
    const revisionEnds = /%%EOF[\r\n]*$/.test(sig.text.slice(Math.max(0, sig.end - 16), sig.end));
    section.add(revisionEnds, "phạm vi ký phủ trọn phiên bản tệp đã ký (đến %%EOF)",
      "the signed range covers the file up to the end of the signed revision (%%EOF)",
      "phạm vi ký không kết thúc ở cuối một phiên bản tệp (%%EOF)", "the signed range does not end where a revision of the file ends (%%EOF)");
    if (sig.end < pdf.length) {
      const update = appendedUpdate(sig.text, sig.end);
      const after = pdf.length - sig.end;
      if (update.ok) {
        section.add(true, `${after} byte sau phạm vi ký là bản cập nhật nối thêm, chỉ thêm dữ liệu kiểm tra (DSS: chứng thư, CRL; ${update.added} đối tượng mới)`,
          `the ${after} bytes after the signed range are an appended update adding validation data only (DSS: certificates, CRLs; ${update.added} new objects)`);
      } else {
        section.add(false, "", "",
          update.why === "compressed" ? "bản cập nhật nối sau khi ký ở dạng nén mà trang không đọc được (hãy dùng hocba verify)"
            : update.why === "root" ? "bản cập nhật nối sau khi ký thay gốc tài liệu (/Root): trang hiển thị có thể khác trang đã ký"
              : `bản cập nhật nối sau khi ký sửa đối tượng ${update.changed.join(", ")}: nội dung hiển thị có thể khác nội dung đã ký`,
          update.why === "compressed" ? "the update appended after signing is compressed (object streams), which this page does not read (use hocba verify)"
            : update.why === "root" ? "the update appended after signing replaces the document's root (/Root): what is shown may not be what was signed"
              : `the update appended after signing changes object(s) ${update.changed.join(", ")}: what is shown may not be what was signed`);
      }
    } else {
      section.add(true, "chữ ký phủ toàn bộ tệp", "the signature covers the whole file");
    }
    let cms;
    const contents = fromHex(gap.slice(1, -1));
    try {
      cms = await readCms(contents);
      if (!cms.cert || !cms.attributes) throw new Error("no signer");
    } catch (e) {
      section.add(false, "", "", "không đọc được cấu trúc CMS của chữ ký (/Contents): chữ ký đã bị sửa hay hỏng",
        "the signature's CMS structure (/Contents) cannot be read: the signature was changed or damaged");
      return;
    }
    section.add(contents.subarray(cms.end).every((x) => x === 0), "/Contents chỉ chứa cấu trúc CMS (phần còn lại là số 0)",
      "/Contents holds the CMS structure and nothing else (zeros after it)",
      "phần sau cấu trúc CMS trong /Contents đã bị sửa", "the room after the CMS structure in /Contents was changed after signing");
    const digest = await sha256(concat(pdf.subarray(a, a + b), pdf.subarray(c, c + d)));
    const stated = signedAttribute(cms.attributes, CMS.messageDigest);
    const type = signedAttribute(cms.attributes, CMS.contentType);
    section.add(cms.digestAlgorithm === CMS.sha256 && !!stated && stated.length === 1 && equalBytes(stated[0].content, digest)
      && !!type && derOid(type[0]) === CMS.data,
      `mã băm SHA-256 của các byte đã ký (${toHex(digest).slice(0, 16)}…) khớp messageDigest trong chữ ký: trang in và tệp đính kèm chưa bị sửa`,
      `the SHA-256 of the signed bytes (${toHex(digest).slice(0, 16)}…) is the signature's messageDigest: the printed page and the attachments are unchanged`,
      `mã băm SHA-256 của các byte đã ký (${toHex(digest).slice(0, 16)}…) KHÁC messageDigest: tệp đã bị sửa sau khi ký (trang in hay tệp đính kèm)`,
      `the SHA-256 of the signed bytes (${toHex(digest).slice(0, 16)}…) is NOT the signature's messageDigest: the file was changed after signing (the page or an attachment)`);
    // CMS signs the DER of the signed attributes as a SET OF (tag 0x31), not as the [0] IMPLICIT field it sits in.
    const signedAttributes = concat(Uint8Array.of(0x31), cms.attributes.all.subarray(1));
    const isP256 = cms.cert.keyType === OID.ecPublicKey && cms.cert.curve === OID.p256;
    section.add(isP256 && cms.signatureAlgorithm === "1.2.840.10045.4.3.2"
      && (await signedBy(cms.cert, cms.signatureAlgorithm, cms.signature, signedAttributes)),
      `chữ ký ECDSA P-256 (SHA-256) của '${cms.cert.name}' trên các thuộc tính đã ký hợp lệ`,
      `the ECDSA P-256 (SHA-256) signature of '${cms.cert.name}' over the signed attributes is valid`,
      `chữ ký ECDSA của '${cms.cert.name}' trên các thuộc tính đã ký KHÔNG hợp lệ`,
      `the ECDSA signature of '${cms.cert.name}' over the signed attributes does NOT verify`);
    const school = bundle && bundle.record && bundle.record.school_code;
    section.add(cms.cert.subject[OID.title] === "school_seal" && !!school && cms.cert.subject[OID.orgId] === school,
      `ký bằng dấu của trường ${school} (trường của hồ sơ)`, `signed by the seal of the record's school (${school})`,
      `không ký bằng dấu của trường của hồ sơ (${school || "?"})`, `not signed by the seal of the record's school (${school || "?"})`);
    const at = pdfDate(sig.text, c, sig.text.indexOf("endobj", c)) || new Date();
    section.inform(`ký lúc ${vnTime(at)} (theo tệp; dấu thời gian RFC 3161 của chữ ký: trang không kiểm tra, hocba verify kiểm tra)`,
      `signed at ${at.toISOString()} as the file states (the signature's RFC 3161 timestamp is not checked here; hocba verify checks it)`);
    await checkChain(section, cmsChain(cms), at, "signing", ctx, null);
  }

  // --- the page ---------------------------------------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);
  const ctx = { anchors: [], crls: [] };

  // The trust anchors every chain must lead to: those the page ships, or those of a dropped file (PEM), each shown by
  // its name and SHA-256 fingerprint.
  async function useAnchors(ders, source) {
    ctx.anchors = await Promise.all(ders.map(parseCertificate));
    $("anchor-fingerprint").textContent = ctx.anchors
      .map((a) => a.fingerprint.match(/../g).join(":").toUpperCase()).join("\n");
    $("anchor-name").textContent = `${ctx.anchors.map((a) => a.name).join("; ")} — ${source}`;
    const shipped = document.querySelector('meta[name="hocba-anchor-sha256"]').content.split(" ").filter(Boolean);
    const same = ctx.anchors.every((a) => shipped.includes(a.fingerprint));
    $("anchor-note").textContent = shipped.length && !same
      ? "Khác với gốc trang này mang theo / differs from the anchor this page ships" : "";
  }

  const MARKS = { [PASSED]: "✓", [FAILED]: "✗", [NOT_CHECKED]: "–", [INFORMATION]: "ℹ" };
  const MARK_WORDS = {
    [PASSED]: "đạt / passed", [FAILED]: "không đạt / failed",
    [NOT_CHECKED]: "chưa kiểm tra / not checked", [INFORMATION]: "thông tin / information",
  };

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function showSummary(bundle, result, status, verified) {
    const box = $("summary");
    box.replaceChildren();
    if (!bundle || !bundle.record || !bundle.record.document) return;
    const d = bundle.record.document;
    const schoolName = d.school && d.school.name;
    const rows = [
      ["Trường / School", schoolName ? `${schoolName} (${bundle.record.school_code})` : bundle.record.school_code],
      ["Năm học / School year", bundle.record.school_year],
      ["Khối, lớp / Grade, class", `${d.grade ?? "?"} — ${d.class_name ?? "?"}`],
      ["Phiên bản / Version", String(bundle.record.version)],
      ["Hiệu lực / Status", {
        current: "Hiện hành / current",
        superseded: `ĐÃ ĐƯỢC THAY THẾ bởi phiên bản ${status.by} / SUPERSEDED by version ${status.by}`,
        "current?": "hiện hành? (chưa kiểm tra) / current? (not checked)",
        "superseded?": `đã thay thế bởi phiên bản ${status.by}? (chưa kiểm tra) / superseded by version ${status.by}? (not checked)`,
      }[status.state] || "không rõ / unknown"],
      ["Lưu trữ lúc / Archived at", result && result.admittedAt ? vnTime(result.admittedAt) : `${bundle.log && bundle.log.archived_at} (chưa chứng minh / not proven)`],
    ];
    for (const s of (result && result.signers) || []) {
      const [vi, en] = ROLES[s.role] || [s.role, s.role];
      rows.push([`${vi} / ${en}`, `${s.name} — ${vnTime(s.at)}`]);
    }
    const table = element("dl", "summary");
    for (const [k, v] of rows) {
      table.append(element("dt", "", k), element("dd", "", v));
    }
    const title = verified ? "Tóm tắt hồ sơ / Record summary"
      : "Tóm tắt: CHƯA XÁC MINH, chỉ là điều tệp nêu / Summary: NOT VERIFIED, only what the file states";
    box.append(element("h2", verified ? "" : "warning", title), table);
  }

  function showVerdict(verdict) {
    const box = $("result");
    box.replaceChildren();
    const ok = verdict.ok;
    const banner = element("p", ok ? "verdict ok" : "verdict bad",
      ok ? "✓ ĐÃ XÁC MINH — mọi kiểm tra đã thực hiện đều đạt / VERIFIED — every check made passed"
        : "✗ KHÔNG XÁC MINH ĐƯỢC — có kiểm tra không đạt / NOT VERIFIED — a check failed");
    banner.id = "verdict";
    banner.dataset.ok = String(ok);
    box.append(banner);
    for (const section of verdict.sections) {
      const block = element("section", "checks");
      block.append(element("h3", "", `${section.vi} / ${section.en}`));
      const list = element("ul");
      for (const line of section.lines) {
        const item = element("li", line.mark);
        item.dataset.mark = line.mark;
        const mark = element("span", "mark", MARKS[line.mark]);
        mark.title = MARK_WORDS[line.mark];
        item.append(mark, element("span", "vi", line.vi), element("span", "en", line.en));
        list.append(item);
      }
      block.append(list);
      box.append(block);
    }
    box.dataset.done = "true";
  }

  async function evidenceFor(bundle, fromServer) {
    if (fromServer !== undefined) return fromServer;
    try {
      const key = toBase64url(fromHex(bundle.log.leaf_hash)).slice(0, 16);
      const response = await fetch(`/v1/copies/${Number(bundle.log.leaf_index)}.${key}`, { cache: "no-store" });
      if (response.status === 404) return { bundle: null, superseded_by: null };
      if (!response.ok) return undefined;
      return await response.json();
    } catch (e) {
      return undefined;
    }
  }

  // A PDF copy (`pdf`, its bytes) verifies only when its own signature does too.
  async function verifyAll(bundle, qr, fromServer, pdf) {
    $("result").dataset.done = "false";
    $("status").textContent = "Đang kiểm tra… / Checking…";
    const verdict = new Verdict();
    ctx.crls = await parseCrls(bundle && bundle.crl).catch(() => []);
    const result = await verifyBundle(bundle, ctx, verdict);
    let status = { state: "unknown" };
    if (result) {
      await checkConsistency(bundle, ctx, verdict);
      let evidence = await evidenceFor(bundle, fromServer);
      if (evidence && evidence.bundle && evidence.bundle.log.leaf_hash !== bundle.log.leaf_hash) evidence = undefined;
      if (evidence && !evidence.bundle) {
        verdict.sections.at(-1).notChecked("kho lưu trữ không tìm thấy mục này", "the archive does not know this entry");
        evidence = undefined;
      }
      status = await checkStatus(bundle, evidence, ctx, verdict);
      if (qr) await checkQr(qr, bundle, result, ctx, verdict);
      else {
        verdict.section("Mã QR của bản sao", "The copy's QR code").notChecked(
          "không có nội dung QR đi kèm", "no QR payload came with it");
      }
    }
    if (pdf) {
      // Shown first: whether the paper's own signature holds is a PDF copy's first question.
      await checkPdfSignature(pdf, bundle, ctx, verdict);
      verdict.sections.unshift(verdict.sections.pop());
    }
    showSummary(bundle, result, status, verdict.ok);
    showVerdict(verdict);
    $("status").textContent = "";
    return verdict;
  }

  async function readFile(file) {
    const bytes = new Uint8Array(await file.arrayBuffer());
    if (new TextDecoder("latin1").decode(bytes.subarray(0, 5)) === "%PDF-") {
      const { bundle, qr } = await readPdf(bytes);
      if (!bundle) return { error: "Tệp PDF không đính kèm gói xác minh / the PDF has no verification bundle attached" };
      return { bundle, qr, pdf: bytes };
    }
    const text = new TextDecoder().decode(bytes);
    try {
      const json = JSON.parse(text);
      return { bundle: json };
    } catch (e) {
      if (/-----BEGIN CERTIFICATE-----/.test(text)) return { anchor: text };
      return { error: "Tệp không phải JSON hay PDF / the file is neither JSON nor PDF" };
    }
  }

  async function dropped(files) {
    for (const file of files) {
      const got = await readFile(file);
      if (got.anchor) {
        const blocks = got.anchor.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) || [];
        const ders = blocks.map((b) => fromBase64(b.replace(/-----[A-Z ]+-----/g, "")));
        await useAnchors(ders, `tệp ${file.name} / file ${file.name}`);
      } else if (got.error) {
        $("status").textContent = got.error;
        $("result").replaceChildren();
        $("result").dataset.done = "true";
      } else {
        await verifyAll(got.bundle, got.qr, undefined, got.pdf);
      }
    }
  }

  async function start() {
    if (!subtle) {
      $("status").textContent = "Trình duyệt không có WebCrypto (cần https) / this browser has no WebCrypto (https is needed)";
      return;
    }
    const shipped = document.querySelector('meta[name="hocba-anchor"]').content.split(" ").filter(Boolean);
    if (shipped.length) await useAnchors(shipped.map(fromBase64), "trang này mang theo / shipped with this page");
    const zone = $("drop");
    zone.addEventListener("dragover", (e) => {
      e.preventDefault();
      zone.classList.add("over");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      dropped(e.dataTransfer.files);
    });
    $("file").addEventListener("change", (e) => dropped(e.target.files));
    const address = /^\/v\/(\d+)\.([A-Za-z0-9_-]+)$/.exec(location.pathname);
    if (address) {
      $("status").textContent = "Đang tải bản sao… / Fetching the copy…";
      const response = await fetch(`/v1/copies/${address[1]}.${address[2]}`, { cache: "no-store" });
      if (!response.ok) {
        $("status").textContent = "Không tìm thấy bản sao / no copy at this address";
        return;
      }
      const answer = await response.json();
      const fragment = decodeURIComponent(location.hash.slice(1));
      await verifyAll(answer.bundle, fragment ? location.origin + location.pathname + "#" + fragment : null, answer);
    } else {
      $("result").dataset.done = "idle";
    }
  }

  // What the tests and a curious reader may call from the console.
  globalThis.hocbaVerify = {
    canonical, verifyInclusion, verifyConsistency, verifyAll, parseCertificate, parseCrls, issuedBy, pdfSignature,
  };
  document.addEventListener("DOMContentLoaded", start);
})();
