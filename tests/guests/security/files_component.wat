;; A wasi:cli command component that reads /data/hello.txt through its preopens (WASI 0.2),
;; for the files-grant and import-check tests: it imports wasi:filesystem's open-at and read,
;; which need a files grant. It answers CGI on stdout:
;;   preopen <name>        for each preopened directory
;;   content: <bytes>      the first 4096 bytes of hello.txt in the first one
;;   no preopens | open failed | read failed
(component
  (type $error-ty (instance (export "error" (type (sub resource)))))
  (import "wasi:io/error@0.2.0" (instance $io-error (type $error-ty)))
  (alias export $io-error "error" (type $error))
  (type $streams-ty (instance
    (alias outer 1 $error (type $e))
    (export "error" (type $err (eq $e)))
    (export "output-stream" (type $out (sub resource)))
    (type $own-err (own $err))
    (type $stream-error (variant (case "last-operation-failed" $own-err) (case "closed")))
    (export "stream-error" (type $se (eq $stream-error)))
    (type $borrow-out (borrow $out))
    (type $bytes (list u8))
    (type $write-result (result (error $se)))
    (export "[method]output-stream.blocking-write-and-flush"
      (func (param "self" $borrow-out) (param "contents" $bytes) (result $write-result)))
  ))
  (import "wasi:io/streams@0.2.0" (instance $streams (type $streams-ty)))
  (alias export $streams "output-stream" (type $output-stream))
  (type $stdout-ty (instance
    (alias outer 1 $output-stream (type $o))
    (export "output-stream" (type $out (eq $o)))
    (type $own-out (own $out))
    (export "get-stdout" (func (result $own-out)))
  ))
  (import "wasi:cli/stdout@0.2.0" (instance $stdout (type $stdout-ty)))
  (type $fs-ty (instance
    (export "descriptor" (type $d (sub resource)))
    (type $error-code-ty (enum "access" "would-block" "already" "bad-descriptor" "busy" "deadlock" "quota" "exist"
      "file-too-large" "illegal-byte-sequence" "in-progress" "interrupted" "invalid" "io" "is-directory" "loop"
      "too-many-links" "message-size" "name-too-long" "no-device" "no-entry" "no-lock" "insufficient-memory"
      "insufficient-space" "not-directory" "not-empty" "not-recoverable" "unsupported" "no-tty" "no-such-device"
      "overflow" "not-permitted" "pipe" "read-only" "invalid-seek" "text-file-busy" "cross-device"))
    (export "error-code" (type $error-code (eq $error-code-ty)))
    (type $path-flags-ty (flags "symlink-follow"))
    (export "path-flags" (type $path-flags (eq $path-flags-ty)))
    (type $open-flags-ty (flags "create" "directory" "exclusive" "truncate"))
    (export "open-flags" (type $open-flags (eq $open-flags-ty)))
    (type $descriptor-flags-ty (flags "read" "write" "file-integrity-sync" "data-integrity-sync"
      "requested-write-sync" "mutate-directory"))
    (export "descriptor-flags" (type $descriptor-flags (eq $descriptor-flags-ty)))
    (type $filesize-ty u64)
    (export "filesize" (type $filesize (eq $filesize-ty)))
    (type $borrow-d (borrow $d))
    (type $own-d (own $d))
    (type $open-result (result $own-d (error $error-code)))
    (export "[method]descriptor.open-at" (func (param "self" $borrow-d) (param "path-flags" $path-flags)
      (param "path" string) (param "open-flags" $open-flags) (param "flags" $descriptor-flags)
      (result $open-result)))
    (type $bytes (list u8))
    (type $chunk (tuple $bytes bool))
    (type $read-result (result $chunk (error $error-code)))
    (export "[method]descriptor.read" (func (param "self" $borrow-d) (param "length" $filesize)
      (param "offset" $filesize) (result $read-result)))
  ))
  (import "wasi:filesystem/types@0.2.0" (instance $fs (type $fs-ty)))
  (alias export $fs "descriptor" (type $descriptor))
  (type $preopens-ty (instance
    (alias outer 1 $descriptor (type $dd))
    (export "descriptor" (type $d (eq $dd)))
    (type $own-d (own $d))
    (type $entry (tuple $own-d string))
    (type $entries (list $entry))
    (export "get-directories" (func (result $entries)))
  ))
  (import "wasi:filesystem/preopens@0.2.0" (instance $preopens (type $preopens-ty)))

  ;; Memory and an allocator first, so that the lowered imports can use them.
  (core module $Alloc
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const 8192))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $ptr i32)
      ;; align up, then bump
      (local.set $ptr (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                               (i32.sub (i32.const 0) (local.get 2))))
      (global.set $heap (i32.add (local.get $ptr) (local.get 3)))
      (local.get $ptr)))
  (core instance $alloc (instantiate $Alloc))
  (alias core export $alloc "memory" (core memory $memory))
  (alias core export $alloc "realloc" (core func $realloc))

  (core func $get-stdout (canon lower (func $stdout "get-stdout")))
  (core func $write (canon lower (func $streams "[method]output-stream.blocking-write-and-flush")
    (memory $memory)))
  (core func $get-directories (canon lower (func $preopens "get-directories") (memory $memory)
    (realloc $realloc) string-encoding=utf8))
  (core func $open-at (canon lower (func $fs "[method]descriptor.open-at") (memory $memory)
    string-encoding=utf8))
  (core func $read (canon lower (func $fs "[method]descriptor.read") (memory $memory) (realloc $realloc)))

  (core module $Main
    (import "alloc" "memory" (memory 1))
    (import "host" "get-stdout" (func $get-stdout (result i32)))
    (import "host" "write" (func $write (param i32 i32 i32 i32)))
    (import "host" "get-directories" (func $get-directories (param i32)))
    (import "host" "open-at" (func $open-at (param i32 i32 i32 i32 i32 i32 i32)))
    (import "host" "read" (func $read (param i32 i64 i64 i32)))
    (data (i32.const 0) "Content-Type: text/plain\n\n")    ;; 26 bytes
    (data (i32.const 32) "hello.txt")                       ;; 9
    (data (i32.const 48) "preopen ")                        ;; 8
    (data (i32.const 64) "\n")                              ;; 1
    (data (i32.const 80) "no preopens\n")                   ;; 12
    (data (i32.const 96) "open failed\n")                   ;; 12
    (data (i32.const 112) "read failed\n")                  ;; 12
    (data (i32.const 128) "content: ")                      ;; 9
    (global $out (mut i32) (i32.const 0))
    (func $say (param $ptr i32) (param $len i32)
      (call $write (global.get $out) (local.get $ptr) (local.get $len) (i32.const 1024)))
    (func (export "run") (result i32)
      (local $list i32) (local $count i32) (local $i i32) (local $entry i32) (local $file i32)
      (global.set $out (call $get-stdout))
      (call $say (i32.const 0) (i32.const 26))
      (call $get-directories (i32.const 2048))
      (local.set $list (i32.load (i32.const 2048)))
      (local.set $count (i32.load (i32.const 2052)))
      (if (i32.eqz (local.get $count))
        (then (call $say (i32.const 80) (i32.const 12)) (return (i32.const 0))))
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
          (local.set $entry (i32.add (local.get $list) (i32.mul (local.get $i) (i32.const 12))))
          (call $say (i32.const 48) (i32.const 8))
          (call $say (i32.load offset=4 (local.get $entry)) (i32.load offset=8 (local.get $entry)))
          (call $say (i32.const 64) (i32.const 1))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
      ;; open-at(first preopen, no path flags, "hello.txt", no open flags, read) -> result at 3072
      (call $open-at (i32.load (local.get $list)) (i32.const 0) (i32.const 32) (i32.const 9) (i32.const 0)
        (i32.const 1) (i32.const 3072))
      (if (i32.load8_u (i32.const 3072))
        (then (call $say (i32.const 96) (i32.const 12)) (return (i32.const 0))))
      (local.set $file (i32.load (i32.const 3076)))
      ;; read(file, 4096, 0) -> result at 3104: tag, then list ptr, len, eof
      (call $read (local.get $file) (i64.const 4096) (i64.const 0) (i32.const 3104))
      (if (i32.load8_u (i32.const 3104))
        (then (call $say (i32.const 112) (i32.const 12)) (return (i32.const 0))))
      (call $say (i32.const 128) (i32.const 9))
      (call $say (i32.load (i32.const 3108)) (i32.load (i32.const 3112)))
      (i32.const 0)))
  (core instance $main (instantiate $Main
    (with "alloc" (instance $alloc))
    (with "host" (instance
      (export "get-stdout" (func $get-stdout))
      (export "write" (func $write))
      (export "get-directories" (func $get-directories))
      (export "open-at" (func $open-at))
      (export "read" (func $read))))))
  (func $run (result (result)) (canon lift (core func $main "run")))
  (instance $run-instance (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $run-instance))
)
