{
  "targets": [
    {
      "target_name": "hpp_mount",
      "sources": ["hpp_mount.c"],
      "cflags": ["-Wall", "-Wextra", "-Werror", "-O2"]
    }
  ]
}
