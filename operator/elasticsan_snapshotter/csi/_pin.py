"""The CSI spec this package is written against; hack/generate_csi_stubs.py checks the proto against it.

Changing the version is a code change: bump CSI_SPEC_VERSION in hack/versions.env and here,
set the new proto's sha256, regenerate (``make stubs``) and adapt the servicers.
"""

CSI_SPEC_VERSION = "v1.12.0"
PROTO_SHA256 = "5b81236a3809f3ff0b877ff9b82215d0b74a8e291d7f3ec6ee1a44f537c0f86a"
