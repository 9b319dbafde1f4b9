# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_auditai_global_optspecs
    string join \n h/help V/version
end

function __fish_auditai_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_auditai_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_auditai_using_subcommand
    set -l cmd (__fish_auditai_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c auditai -n "__fish_auditai_needs_command" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_needs_command" -s V -l version -d 'Print version'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "run" -d 'Train a model from a YAML pipeline spec into a run directory'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "verify" -d 'Verify a signed provenance manifest and the files it names (not available yet)'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "sign" -d 'Add a co-signature to a provenance manifest (not available yet)'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "keygen" -d 'Generate an ed25519 signing key pair (not available yet)'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "hash" -d 'Print blake3 digests of files and directory trees (not available yet)'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "anchor" -d 'Anchor manifest digests on an EVM chain or Bitcoin via OpenTimestamps (not available yet)'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "audit" -d 'Replay challenged training segments to check a run really happened (not available yet)'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "inspect" -d 'Show a provenance manifest as a readable summary (not available yet)'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c auditai -n "__fish_auditai_using_subcommand run" -l device -d 'Where to train: `auto` picks a hardware wgpu adapter when there is one, else the CPU. Overrides the spec\'s training.device' -r -f -a "auto\t''
wgpu\t''
cpu\t''"
complete -c auditai -n "__fish_auditai_using_subcommand run" -l out -d 'Run directory (overrides the spec\'s outputs.dir; default runs/<name>)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand run" -l resume -d 'Continue an interrupted run from its last complete checkpoint'
complete -c auditai -n "__fish_auditai_using_subcommand run" -l force -d 'Replace an existing run directory'
complete -c auditai -n "__fish_auditai_using_subcommand run" -l json -d 'Print one JSON object instead of the results table'
complete -c auditai -n "__fish_auditai_using_subcommand run" -s q -l quiet -d 'No progress or notices on stderr (errors are still printed)'
complete -c auditai -n "__fish_auditai_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c auditai -n "__fish_auditai_using_subcommand verify" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand sign" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand keygen" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand hash" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand anchor" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand audit" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand inspect" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand completions" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run verify sign keygen hash anchor audit inspect completions help" -f -a "run" -d 'Train a model from a YAML pipeline spec into a run directory'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run verify sign keygen hash anchor audit inspect completions help" -f -a "verify" -d 'Verify a signed provenance manifest and the files it names (not available yet)'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run verify sign keygen hash anchor audit inspect completions help" -f -a "sign" -d 'Add a co-signature to a provenance manifest (not available yet)'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run verify sign keygen hash anchor audit inspect completions help" -f -a "keygen" -d 'Generate an ed25519 signing key pair (not available yet)'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run verify sign keygen hash anchor audit inspect completions help" -f -a "hash" -d 'Print blake3 digests of files and directory trees (not available yet)'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run verify sign keygen hash anchor audit inspect completions help" -f -a "anchor" -d 'Anchor manifest digests on an EVM chain or Bitcoin via OpenTimestamps (not available yet)'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run verify sign keygen hash anchor audit inspect completions help" -f -a "audit" -d 'Replay challenged training segments to check a run really happened (not available yet)'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run verify sign keygen hash anchor audit inspect completions help" -f -a "inspect" -d 'Show a provenance manifest as a readable summary (not available yet)'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run verify sign keygen hash anchor audit inspect completions help" -f -a "completions" -d 'Print a shell completion script'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run verify sign keygen hash anchor audit inspect completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
