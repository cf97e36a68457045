/**
 * The files a native body names, as Google reads them: found in the parsed JSON whatever the
 * spelling of the text, and judged by how they are written.
 */
import assert from "node:assert/strict";
import { fileUriMeaning, mayNameFiles, namedFileUris } from "../../lib/translate/file_refs.ts";

/** The Files API's hosts: Gemini's, and the upstream's (a relay, the fake). */
const google = (host: string) =>
  host === "generativelanguage.googleapis.com" || host === "127.0.0.1:8123";

Deno.test("file refs: text that cannot name a file once parsed is told apart without parsing", () => {
  for (
    const text of [
      '{"contents":[{"parts":[{"text":"hi\\nthere \\u4e2d"}]}]}',
      '{"contents":[{"parts":[{"text":"my profile"}]}]}',
    ]
  ) {
    assert.equal(mayNameFiles(text), false, text);
    assert.deepEqual(namedFileUris(JSON.parse(text)), []);
  }
  for (
    const text of [
      '{"fileUri":"files/abc"}',
      '{"fileUri":"files\\/abc"}',
      '{"fileUri":"\\u0066iles/abc"}',
      '{"fileUri":"FILE\\u0053/abc"}',
      '{"fileUri":"files\\u002Fabc"}',
    ]
  ) {
    assert.equal(mayNameFiles(text), true, text);
  }
});

Deno.test("file refs: found anywhere in the parsed body, under any spelling of the keys", () => {
  const body = JSON.parse(
    '{"contents":[{"parts":[{"fileData":{"fileUri":"files\\/a"}},' +
      '{"file_data":{"file\\u0055ri":"files/b"}},' +
      '{"functionResponse":{"parts":[{"fileData":{"file_uri":"files/c"}}]}}]}],' +
      '"requests":[{"content":{"parts":[{"FileData":{"fileUri":"files/d"}}]}}],' +
      '"batch":{"inputConfig":{"fileName":"files/e"}},' +
      '"tools":[{"functionDeclarations":[{"name":"f"}]}],' +
      '"more":[{"functionCall":{"args":{"inputConfig":{"fileName":"files/only-data"}}}}],' +
      '"notes":{"fileUri":"files/not-a-part"}}',
  );
  const uris = (json: unknown) => namedFileUris(json).map((f) => f.uri).sort();
  assert.deepEqual(uris(body), ["files/a", "files/b", "files/c", "files/d", "files/e"]);
  assert.deepEqual(
    namedFileUris(body).find((f) => f.uri === "files/e"),
    { uri: "files/e", from: "batchInput" },
  );
  // Nesting deep enough to overflow a recursive walk.
  let deep: unknown = { fileData: { fileUri: "files/deep" } };
  for (let i = 0; i < 200_000; i++) deep = [deep];
  assert.deepEqual(uris(deep), ["files/deep"]);
});

Deno.test("file refs: a URI is a file, something Google fetches, or refused when it only looks like one", () => {
  const meaning = (uri: string) => fileUriMeaning(uri, google);
  assert.deepEqual(meaning("files/abc-123"), { kind: "file", name: "files/abc-123" });
  assert.deepEqual(
    meaning("https://generativelanguage.googleapis.com/v1beta/files/abc"),
    { kind: "file", name: "files/abc" },
  );
  assert.deepEqual(meaning("http://127.0.0.1:8123/v1beta/files/x9"), {
    kind: "file",
    name: "files/x9",
  });
  for (
    const uri of [
      "https://www.youtube.com/watch?v=1",
      "gs://bucket/files/a",
      "https://cdn.example.com/files/report.pdf",
      // A web host, even a Google one, serves plain files: not the Files API's names.
      "https://cdn.example.com/x/files/abc",
      "https://storage.googleapis.com/my-bucket/files/clip.mp4?X-Goog-Signature=ab",
      "https://storage.googleapis.com/my-bucket/uploads/files/report.pdf",
    ]
  ) {
    assert.deepEqual(meaning(uri), { kind: "other" }, uri);
  }
  for (
    const uri of [
      "files/ABC",
      "FILES/abc",
      "files/abc/",
      "files/abc?alt=media",
      "files%2Fabc",
      " files/abc",
      "https://generativelanguage.googleapis.com/v1beta/files/abc:download",
      "https://generativelanguage.googleapis.com/v1beta/Files/abc",
    ]
  ) {
    assert.deepEqual(meaning(uri), { kind: "malformed" }, uri);
  }
});
