;; An infinite loop: must be stopped by the epoch deadline (504).
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (loop $forever (br $forever))))
