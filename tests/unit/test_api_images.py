"""Image references (kubeless.api.images) by Docker's reference grammar, on plain strings."""

from __future__ import annotations

import pytest

from kubeless.api.images import ImageRef, image_error, parse_image

HEX64 = "0123456789abcdef" * 4

PARSED = {
    "bare name": ("nginx", ImageRef("", "nginx")),
    "name and tag": ("web:1", ImageRef("", "web", "1")),
    "the process runtime's none": ("none", ImageRef("", "none")),
    "the demo image": ("kubeless-demo:latest", ImageRef("", "kubeless-demo", "latest")),
    "path components": ("library/busybox:1.36", ImageRef("", "library/busybox", "1.36")),
    "docker hub domain": ("docker.io/library/busybox:latest",
                          ImageRef("docker.io", "library/busybox", "latest")),
    "registry with port": ("registry:5000/team/app", ImageRef("registry:5000", "team/app")),
    "localhost is a domain": ("localhost/app", ImageRef("localhost", "app")),
    "first component without . or : is a path": ("team/app", ImageRef("", "team/app")),
    "ipv6 registry": ("[::1]:5000/app:v2", ImageRef("[::1]:5000", "app", "v2")),
    "uppercase domain is fine": ("Registry.Example.COM/app", ImageRef("Registry.Example.COM", "app")),
    "separators": ("a.b_c__d-e---f", ImageRef("", "a.b_c__d-e---f")),
    "tag with dots, dashes, underscores": ("app:1.0-rc_1", ImageRef("", "app", "1.0-rc_1")),
    "tag of 128 characters": ("app:" + "t" * 128, ImageRef("", "app", "t" * 128)),
    "digest": (f"app@sha256:{HEX64}", ImageRef("", "app", "", f"sha256:{HEX64}")),
    "tag and digest": (f"reg:5000/app:1@sha256:{HEX64}",
                       ImageRef("reg:5000", "app", "1", f"sha256:{HEX64}")),
    "compound digest algorithm": ("app@sha256+b64u:" + "a" * 32,
                                  ImageRef("", "app", "", "sha256+b64u:" + "a" * 32)),
}


@pytest.mark.parametrize(("text", "expected"), PARSED.values(), ids=PARSED.keys())
def test_parse(text: str, expected: ImageRef) -> None:
    assert parse_image(text) == expected
    assert str(expected) == text
    assert image_error(text) is None


REFUSED = {
    "the issue's example": ("Kubeless Demo:LATEST!!", 'repository name "Kubeless Demo" may only hold'),
    "uppercase name": ("Web:1", 'repository name "Web" must be lowercase'),
    "space inside": ("web app", 'repository name "web app" may only hold'),
    "leading space": (" web", "leading or trailing spaces"),
    "empty tag": ("web:", "nothing after the last ':'"),
    "empty tag after a registry": ("reg:5000/app:", "nothing after the last ':'"),
    "tag starting with a dash": ("web:-1", 'tag "-1" may only hold'),
    "tag with a bang": ("web:1!", 'tag "1!" may only hold'),
    "tag too long": ("app:" + "t" * 129, "at most 128 characters"),
    "three underscores": ("a___b", 'repository name "a___b"'),
    "leading separator": ("-app", 'repository name "-app"'),
    "trailing slash": ("app/", 'repository name "app/"'),
    "empty path component": ("team//app", 'repository name "team//app"'),
    "nothing after the registry": ("reg.io/", "no repository name"),
    "bad registry": ("reg_1.io/app", 'registry "reg_1.io"'),
    "empty digest": ("app@", "nothing after @"),
    "short digest": ("app@sha256:abc", 'digest "sha256:abc" is not ALGORITHM:HEX'),
    "digest without algorithm": (f"app@{HEX64}", "is not ALGORITHM:HEX"),
    "name over 255 characters": ("a" * 256, "longer than 255 characters"),
}


@pytest.mark.parametrize(("text", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_refused(text: str, message: str) -> None:
    error = image_error(text)
    assert error is not None and message in error, error
    assert error.startswith(f'"{text}" is not a valid image reference: ')
    assert "\n" not in error


def test_empty() -> None:
    assert image_error("") == "the image reference is empty"


@pytest.mark.parametrize("value", [None, 1, ["web:1"]], ids=["none", "int", "list"])
def test_not_a_string(value: object) -> None:
    assert "must be a string" in (image_error(value) or "")
