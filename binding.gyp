{
  "targets": [
    {
      "target_name": "xg",
      "sources": [
        "native/xg/addon.cc",
        "native/xg/abi_check.cc",
        "native/xg/evtchn.cc",
        "native/xg/foreign.cc",
        "native/xg/hcbuf.cc",
        "native/xg/privcmd.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags": ["-Wall", "-Wextra"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"]
    }
  ]
}
