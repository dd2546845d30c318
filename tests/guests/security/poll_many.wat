;; poll_oneoff with 5,000 subscriptions, more than the host reads (4,096): each would be parsed
;; in the host, where no epoch deadline reaches, so the call is refused at once with EINVAL (28).
;; It exits with the errno it got. (The zeroed subscriptions are relative clocks of 0 ns.)
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 10)
  (func (export "_start")
    (call $exit (call $poll (i32.const 0) (i32.const 262144) (i32.const 5000) (i32.const 655000)))))
