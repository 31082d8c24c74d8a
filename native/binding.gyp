{
  "targets": [
    {
      "target_name": "kata_ts_native",
      "sources": ["kata_ts_native.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Werror"]
    }
  ]
}
