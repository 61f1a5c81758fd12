#!/usr/bin/env bash
# Build kubeless-demo:latest with `docker import` from Debian's busybox-static
# (no registry is reachable): busybox with its applets linked in /bin, a /www
# page, and httpd/wget/sh. Rebuilt only when missing (or with --force).
set -euo pipefail
image=${KUBELESS_DEMO_IMAGE:-kubeless-demo:latest}
if [ "${1:-}" != "--force" ] && docker image inspect "$image" >/dev/null 2>&1; then
  exit 0
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/www" "$root/etc" "$root/tmp" "$root/proc" "$root/sys" "$root/dev"
cp /usr/bin/busybox "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
echo 'nobody:x:65534:65534:nobody:/:/bin/sh' >> "$root/etc/passwd"
cat > "$root/www/index.html" <<'HTML'
<h1>kubeless demo</h1>
HTML
# The demo page says which task served it: the entrypoint writes the
# container's hostname (the task's container id) and env into /www.
cat > "$root/bin/kubeless-demo" <<'SH'
#!/bin/sh
echo "served by ${KUBELESS_TASK_NAME:-$(hostname)} on ${KUBELESS_NODE_NAME:-?}" > /www/index.html
exec httpd -f -p "${PORT:-80}" -h /www
SH
chmod +x "$root/bin/kubeless-demo"
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/bin' \
  --change 'CMD ["/bin/kubeless-demo"]' \
  - "$image" >/dev/null
echo "built $image"
