;; A wasi:cli command component that sleeps 30 s through wasi:clocks and wasi:io/poll (WASI 0.2).
;; wasmtime waits on the pollable in native code that no epoch deadline reaches, so the host
;; refuses the import of subscribe-duration at deploy.
(component
  (type $poll-ty (instance
    (export "pollable" (type $p (sub resource)))
    (type $borrow-p (borrow $p))
    (export "[method]pollable.block" (func (param "self" $borrow-p)))
  ))
  (import "wasi:io/poll@0.2.0" (instance $poll (type $poll-ty)))
  (alias export $poll "pollable" (type $pollable))
  (type $clock-ty (instance
    (alias outer 1 $pollable (type $pp))
    (export "pollable" (type $p (eq $pp)))
    (type $own-p (own $p))
    (type $duration-ty u64)
    (export "duration" (type $duration (eq $duration-ty)))
    (export "subscribe-duration" (func (param "when" $duration) (result $own-p)))
  ))
  (import "wasi:clocks/monotonic-clock@0.2.0" (instance $clock (type $clock-ty)))
  (core func $subscribe (canon lower (func $clock "subscribe-duration")))
  (core func $block (canon lower (func $poll "[method]pollable.block")))
  (core func $drop (canon resource.drop $pollable))
  (core module $M
    (import "host" "subscribe" (func $subscribe (param i64) (result i32)))
    (import "host" "block" (func $block (param i32)))
    (import "host" "drop" (func $drop (param i32)))
    (func (export "run") (result i32)
      (local $p i32)
      (local.set $p (call $subscribe (i64.const 30000000000)))
      (call $block (local.get $p))
      (call $drop (local.get $p))
      (i32.const 0)))
  (core instance $m (instantiate $M
    (with "host" (instance
      (export "subscribe" (func $subscribe)) (export "block" (func $block)) (export "drop" (func $drop))))))
  (func $run (result (result)) (canon lift (core func $m "run")))
  (instance $run-instance (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $run-instance))
)
