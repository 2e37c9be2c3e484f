// A record's input as a thumbnail when it is an image URL (http(s) or data:), lazily
// loaded; a placeholder otherwise (text, s3:// and the like are not fetched).

const IMAGE_DATA = /^data:image\//i;
const HTTP = /^https?:\/\//i;

export function isImage(uri: string | null | undefined): uri is string {
  return !!uri && (IMAGE_DATA.test(uri) || HTTP.test(uri));
}

export function Thumb({ uri, size = 48 }: { uri: string | null | undefined; size?: number }) {
  if (!isImage(uri)) {
    return (
      <span class="thumb placeholder" style={{ width: size, height: size }} title={uri ?? "no input_uri"}>
        {uri ? "…" : "∅"}
      </span>
    );
  }
  return (
    <img class="thumb" src={uri} loading="lazy" decoding="async" width={size} height={size} alt="" />
  );
}
