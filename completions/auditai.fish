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
complete -c auditai -n "__fish_auditai_needs_command" -f -a "run" -d 'Run a pipeline spec: train a model, or run a multi-stage pipeline\'s stale stages'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "status" -d 'Say which stages of a multi-stage pipeline are stale and exactly why'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "verify" -d 'Verify a provenance manifest: its signatures, who signed it, and every file it names'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "predict" -d 'Use a trained model: verify its run, then predict one output row per input row'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "eval" -d 'Evaluate a trained model on external data against pre-registered acceptance criteria'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "export" -d 'Write a model card (Markdown) or a CycloneDX 1.6 ML-BOM bound to a signed run'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "sign" -d 'Add a co-signature to a provenance manifest; existing signatures stay valid'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "keygen" -d 'Generate an ed25519 key pair (PKCS#8 and SPKI PEM, as openssl writes them)'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "hash" -d 'Print blake3 digests of files and directory trees (`digest  path`, like b3sum)'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "anchor" -d 'Anchor manifest digests on an EVM chain (0G, Ethereum, local) and/or Bitcoin through OpenTimestamps, batched in one Merkle tree; writes a receipt next to each manifest'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "audit" -d 'Check that a run really trained: its commitment, its hash-chained transcript and its checkpoints, then replay segments picked by a challenge and compare with the checkpoints'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "inspect" -d 'Show a provenance manifest as a readable summary (data, code, spec, seed, metrics, signers). Does not verify anything; use `auditai verify` for that'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "bundle" -d 'Write one portable evidence file: the signed manifest byte for byte, its anchor receipt and OpenTimestamps proof, the verdicts beside it and the evaluation attestations given'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "params" -d 'Compare the params stages ran with: `params diff` (two runs, or a run and the working tree) and `params show`, as DVC\'s commands of the same names'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "metrics" -d 'Compare metrics: `metrics diff` (with the change) and `metrics show`, as DVC\'s commands of the same names'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "runs" -d 'List the runs under a directory (default: runs): pipeline manifests (current and history) and training runs, newest first, with params, headline metrics and signer'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "report" -d 'Write one self-contained HTML page about a run: its evidence (digests, signers, anchors, verdicts), training curves, the stage graph and, with --eval, the confusion matrix, subgroups and reliability diagram. Inline SVG, no scripts, nothing fetched'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "contribute" -d 'Sign the terms of a data file as its owner: licence, legal basis, permitted uses, jurisdictions, expiry and reward address (an in-toto statement; docs/contributors.md)'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "rewards" -d 'Value a run\'s data sources and split a reward pool as a Merkle tree any distributor contract pays out (`rewards RUN --pool N -o rewards.json`), or print one claim\'s proof (`rewards proof rewards.json ADDRESS`)'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "dispute" -d 'Settle a dispute between two training nodes given the same job: a refereed bisection over their transcripts down to one step, which the referee replays (`open`, `respond`, `next`, `judge`; docs/audit.md, "Disputes"). `auditai audit dispute` plays it all locally'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "man" -d 'Print the man page (roff), as `man 1 auditai` shows it'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "stage-job" -d 'Run one pipeline stage inside a Slurm allocation (what `executor: slurm` submits; not for direct use)'
complete -c auditai -n "__fish_auditai_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c auditai -n "__fish_auditai_using_subcommand run" -l device -d 'Where to train: `auto` picks a hardware wgpu adapter when there is one, else the CPU. Overrides the spec\'s training.device' -r -f -a "auto\t''
wgpu\t''
cpu\t''"
complete -c auditai -n "__fish_auditai_using_subcommand run" -l out -d 'Run directory (overrides the spec\'s outputs.dir; default runs/<name>)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand run" -l stage -d 'Multi-stage spec: run only this stage and the stale stages upstream of it (repeatable)' -r
complete -c auditai -n "__fish_auditai_using_subcommand run" -s j -l jobs -d 'Multi-stage spec: run at most N stages at once (default: the number of cores, or 64 when stages run as Slurm jobs)' -r
complete -c auditai -n "__fish_auditai_using_subcommand run" -l executor -d 'Multi-stage spec: run every stage here (`local`) or as Slurm jobs (`slurm`), whatever the spec\'s `executor:` says (resources still come from the spec)' -r -f -a "local\t'Child processes of `auditai run`'
slurm\t'Slurm jobs (sbatch)'"
complete -c auditai -n "__fish_auditai_using_subcommand run" -l jurisdiction -d 'Where the run processes its data: an ISO 3166-1 alpha-2 code (DE, US) or EU / EEA. Recorded in the manifest; a data source whose contribution does not permit processing there (or limits jurisdictions when none is declared) refuses the run' -r
complete -c auditai -n "__fish_auditai_using_subcommand run" -l policy -d 'A policy whose `contributions:` section the data sources must meet (every source with a contribution, licences from a list); docs/contributors.md' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand run" -l key -d 'Sign the manifest with this ed25519 private key (PKCS#8 PEM, mode 0600). Otherwise the key comes from AUDITAI_SIGNING_KEY (PEM text), then AUDITAI_SIGNING_KEY_FILE; with none the manifest is written unsigned' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand run" -l chain -d 'An EVM chain preset: 0g-mainnet, 0g-galileo, ethereum, sepolia or local. The node\'s eth_chainId must match the preset' -r
complete -c auditai -n "__fish_auditai_using_subcommand run" -l rpc -d 'The JSON-RPC URL (overrides the preset\'s). Alone, it needs --chain-id: the endpoint never chooses which chain the key signs for' -r
complete -c auditai -n "__fish_auditai_using_subcommand run" -l chain-id -d 'The chain id the transaction is signed for; the node\'s eth_chainId must match it. Required with a bare --rpc; with --chain it must equal the preset\'s' -r
complete -c auditai -n "__fish_auditai_using_subcommand run" -l max-fee-gwei -d 'The most the anchor may pay per gas (max fee per gas), in gwei; the node\'s fee suggestion is capped at this, and a base fee above it is an error' -r
complete -c auditai -n "__fish_auditai_using_subcommand run" -l max-priority-fee-gwei -d 'The most the anchor may tip per gas (max priority fee per gas), in gwei' -r
complete -c auditai -n "__fish_auditai_using_subcommand run" -l max-gas -d 'The most gas the anchor transaction may use (it needs about 22,600); a larger estimate from the node is an error' -r
complete -c auditai -n "__fish_auditai_using_subcommand run" -l keystore -d 'The anchoring account\'s Web3 Secret Storage v3 keystore (as cast and geth write). Its password comes from AUDITAI_KEYSTORE_PASSWORD or --password-file. Without a keystore the key comes from AUDITAI_ANCHOR_KEY (hex)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand run" -l password-file -d 'A file holding the keystore\'s password' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand run" -l confirmations -d 'Blocks on top of the anchor\'s block to wait for (default: the preset\'s, 1 on local)' -r
complete -c auditai -n "__fish_auditai_using_subcommand run" -l timeout -d 'Seconds to wait for the confirmations' -r
complete -c auditai -n "__fish_auditai_using_subcommand run" -l calendar -d 'An OpenTimestamps calendar URL (repeatable; default: the public calendars)' -r
complete -c auditai -n "__fish_auditai_using_subcommand run" -l resume -d 'Continue an interrupted run from its last complete checkpoint (single training specs)'
complete -c auditai -n "__fish_auditai_using_subcommand run" -l force -d 'Single training spec: start over in an existing run directory. The old run is moved aside to <DIR>.replaced-<unix time>, never deleted; only directories auditai marked as run directories qualify, never the current directory, the spec\'s directory, their ancestors, the home directory or a git work-tree root. Multi-stage spec: run every selected stage even when nothing it depends on changed'
complete -c auditai -n "__fish_auditai_using_subcommand run" -l no-upstream -d 'Multi-stage spec: with --stage, run only the named stages, not their upstream stages (DVC\'s --single-item)'
complete -c auditai -n "__fish_auditai_using_subcommand run" -l dry-run -d 'Multi-stage spec: print which stages would run and why; run and write nothing'
complete -c auditai -n "__fish_auditai_using_subcommand run" -l no-run-cache -d 'Multi-stage spec: neither restore stages from the run cache (.auditai/cache/) nor save the stages that run into it (DVC\'s --no-run-cache)'
complete -c auditai -n "__fish_auditai_using_subcommand run" -l skip-bad-rows -d 'Train without the data\'s bad rows (a wrong number of fields, text in a column declared numeric) instead of stopping; how many were left out, and which lines, are recorded in the manifest (as are rows without a label, which are always left out)'
complete -c auditai -n "__fish_auditai_using_subcommand run" -l json -d 'Print one JSON object instead of the results table'
complete -c auditai -n "__fish_auditai_using_subcommand run" -s q -l quiet -d 'No progress or notices on stderr (errors are still printed)'
complete -c auditai -n "__fish_auditai_using_subcommand run" -l anchor-commitment -d 'Anchor the training commitment (commitment.json) before the first step, with the options below, so it provably predates the result; writes commitment.anchor.json. A failure to anchor stops the run before training'
complete -c auditai -n "__fish_auditai_using_subcommand run" -l ots -d 'Also timestamp the root on Bitcoin through OpenTimestamps calendars'
complete -c auditai -n "__fish_auditai_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c auditai -n "__fish_auditai_using_subcommand status" -l stage -d 'Only these stages and their upstream stages (repeatable)' -r
complete -c auditai -n "__fish_auditai_using_subcommand status" -l out -d 'The pipeline run directory whose history/ backs the lock (default: the spec\'s outputs.dir), as given to `auditai run --out`' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand status" -l key -d 'The key the pipeline is signed with (its public half is used: a lock entry counts only when the manifest backing it is signed by it). Otherwise AUDITAI_SIGNING_KEY or AUDITAI_SIGNING_KEY_FILE, as for `auditai run`; with none, an unsigned pipeline is assumed' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand status" -l dag -d 'Draw the stage graph (each stage under the stages it reads from) with each stage\'s state, instead of the table; with --json, add the graph\'s edges'
complete -c auditai -n "__fish_auditai_using_subcommand status" -l json -d 'Print one JSON object instead of the table'
complete -c auditai -n "__fish_auditai_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c auditai -n "__fish_auditai_using_subcommand verify" -l expect -d 'What the document must be: manifest (provenance or pipeline), provenance, pipeline, evaluation, verdict, model-card, ml-bom or prediction-log. Anything else fails' -r
complete -c auditai -n "__fish_auditai_using_subcommand verify" -l key -d 'A trusted public key (SPKI PEM); repeat for several' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand verify" -l policy -d 'A trust policy (YAML: signers, threshold, required names)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand verify" -l root -d 'Where the data and spec files named by the manifest live (default: the git work tree holding the manifest, else the current directory)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand verify" -l rpc -d 'Check the anchor receipt online against this JSON-RPC endpoint' -r
complete -c auditai -n "__fish_auditai_using_subcommand verify" -l chain -d 'Check the anchor receipt online against this chain preset\'s endpoint' -r
complete -c auditai -n "__fish_auditai_using_subcommand verify" -l bitcoin-header -d 'A Bitcoin block header the verifier trusts, as HEIGHT:MERKLEROOT (the merkle root as `bitcoin-cli getblockheader` prints it); repeatable. An OpenTimestamps Bitcoin attestation is reported as checked only against such a header or --bitcoin-rpc, else as claimed' -r
complete -c auditai -n "__fish_auditai_using_subcommand verify" -l bitcoin-rpc -d 'The verifier\'s own bitcoind JSON-RPC URL (http://user:password@127.0.0.1:8332), asked for the headers of attested blocks. Credentials are used, never printed' -r
complete -c auditai -n "__fish_auditai_using_subcommand verify" -l allow-extra -d 'A file or directory in the run directory that the manifest does not name but that is expected there (repeatable). Anything else unnamed fails verification, as in OpenSSF model-signing; the manifest\'s own receipts and proofs are always expected' -r
complete -c auditai -n "__fish_auditai_using_subcommand verify" -l reveal -d 'Check a withheld data source of a run (a salted contribution) with its salt: SOURCE is the data file as the manifest names it (or its file name), SALT_FILE the owner\'s salt (repeatable). Without it the source is reported as withheld, committed by its owner' -r
complete -c auditai -n "__fish_auditai_using_subcommand verify" -l artifact -d 'Check only that FILE is a subject or byproduct of the signed statement (found by digest, under any name), besides the signatures, policy and anchor; repeatable. No other file the manifest records is needed. Exit 0 only when every given file matches' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand verify" -l attest -d 'Write a signed verdict (an in-toto Statement with the SLSA Verification Summary v1 predicate, docs/attestations.md) of this check, signed with this ed25519 private key: next to the manifest as verdict-<kind>-<time>.intoto.json, or to --attest-out. A failed check yields a verdict that says FAILED' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand verify" -l attest-out -d 'Where to write the verdict (an existing file is not replaced)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand verify" -l require-covered -d 'Prediction logs: fail unless every entry is covered by an anchor or a signed checkpoint (an unkeyed hash chain alone does not stop someone who rewrites the whole log)'
complete -c auditai -n "__fish_auditai_using_subcommand verify" -l partial -d 'Check the recorded files that are here and report the others as `absent` (dependencies as withheld), never as verified; a present file that differs still fails. The verdict line counts both'
complete -c auditai -n "__fish_auditai_using_subcommand verify" -l json -d 'Print one JSON object instead of the table'
complete -c auditai -n "__fish_auditai_using_subcommand verify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c auditai -n "__fish_auditai_using_subcommand predict" -l input -d 'The rows to predict (CSV with a header; columns matched by name, extra columns ignored)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand predict" -l output -d 'Write the predictions here (written to a temporary file, renamed at the end) instead of stdout. An existing file is not replaced' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand predict" -l device -d 'Where to run the model (default: the CPU)' -r -f -a "auto\t''
wgpu\t''
cpu\t''"
complete -c auditai -n "__fish_auditai_using_subcommand predict" -l key -d 'A public key (SPKI PEM) trusted to have signed the run\'s manifest; repeat for several. The model is loaded only when the manifest\'s signatures satisfy it and the weights, preprocessing and spec match the manifest\'s digests' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand predict" -l policy -d 'A trust policy the manifest\'s signatures must satisfy' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand predict" -l keep -d 'Copy these input columns to every output row (comma-separated or repeated), e.g. `--keep id,name`' -r
complete -c auditai -n "__fish_auditai_using_subcommand predict" -l log -d 'Append one hash-chained entry per prediction to this JSON Lines log (created when absent; locked while in use; `auditai verify LOG` checks it, `auditai anchor LOG` anchors its head). A file that is not a prediction log is refused and left untouched' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand predict" -l sign-with -d 'With --log: sign a checkpoint over every entry of the log with this ed25519 private key (PKCS#8 PEM, mode 0600), written next to it as LOG.checkpoint.intoto.json, so that `auditai verify LOG --key PUB` reports the entries as covered' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand predict" -l id-column -d 'The input column that identifies a row, copied to the output (default: `id` when the input has it)' -r
complete -c auditai -n "__fish_auditai_using_subcommand predict" -l json -d 'JSON Lines (one object per row) instead of CSV'
complete -c auditai -n "__fish_auditai_using_subcommand predict" -l no-verify -d 'Load the model without checking who signed its manifest (its files are still read only through the manifest\'s digests). Loud, and recorded: every output row (and log entry) says the model was not verified'
complete -c auditai -n "__fish_auditai_using_subcommand predict" -l skip-bad-rows -d 'Kept for compatibility: a row that cannot be scored always gets an output row with an empty prediction and its reason'
complete -c auditai -n "__fish_auditai_using_subcommand predict" -s q -l quiet -d 'No summary or notices on stderr (errors are still printed)'
complete -c auditai -n "__fish_auditai_using_subcommand predict" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c auditai -n "__fish_auditai_using_subcommand eval" -l data -d 'The evaluation data: a CSV with the model\'s feature columns (matched by name) and its label column, rows the model never saw' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand eval" -l by -d 'Also report the metrics per value of this column (repeatable; it need not be a model feature, e.g. sex or an age band)' -r
complete -c auditai -n "__fish_auditai_using_subcommand eval" -l criteria -d 'Acceptance criteria (YAML, docs/eval.md): each reports pass or fail with the number behind it; exit 1 when one fails' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand eval" -l commit-criteria -d 'Commit to a criteria file before the evaluation data is opened: write FILE.commitment.json (its digests and the time) and, with --chain/--rpc and/or --ots, anchor it, so a later evaluation proves the criteria predate it. Evaluates nothing' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand eval" -l key -d 'A public key (SPKI PEM) trusted to have signed the run\'s manifest; repeat for several' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand eval" -l policy -d 'A trust policy the run\'s manifest must satisfy' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand eval" -l sign-with -d 'Sign the attestation with this ed25519 private key. Otherwise the key comes from AUDITAI_SIGNING_KEY, then AUDITAI_SIGNING_KEY_FILE; with none it is written unsigned' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand eval" -l out -d 'Where to write the attestation (default: eval.intoto.json; an existing file is not replaced)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand eval" -l root -d 'Where the run\'s training data lives, for the leakage check (default: the git work tree holding the run, else the current directory)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand eval" -l device -d 'Where to run the model' -r -f -a "auto\t''
wgpu\t''
cpu\t''"
complete -c auditai -n "__fish_auditai_using_subcommand eval" -l chain -d 'An EVM chain preset: 0g-mainnet, 0g-galileo, ethereum, sepolia or local. The node\'s eth_chainId must match the preset' -r
complete -c auditai -n "__fish_auditai_using_subcommand eval" -l rpc -d 'The JSON-RPC URL (overrides the preset\'s). Alone, it needs --chain-id: the endpoint never chooses which chain the key signs for' -r
complete -c auditai -n "__fish_auditai_using_subcommand eval" -l chain-id -d 'The chain id the transaction is signed for; the node\'s eth_chainId must match it. Required with a bare --rpc; with --chain it must equal the preset\'s' -r
complete -c auditai -n "__fish_auditai_using_subcommand eval" -l max-fee-gwei -d 'The most the anchor may pay per gas (max fee per gas), in gwei; the node\'s fee suggestion is capped at this, and a base fee above it is an error' -r
complete -c auditai -n "__fish_auditai_using_subcommand eval" -l max-priority-fee-gwei -d 'The most the anchor may tip per gas (max priority fee per gas), in gwei' -r
complete -c auditai -n "__fish_auditai_using_subcommand eval" -l max-gas -d 'The most gas the anchor transaction may use (it needs about 22,600); a larger estimate from the node is an error' -r
complete -c auditai -n "__fish_auditai_using_subcommand eval" -l keystore -d 'The anchoring account\'s Web3 Secret Storage v3 keystore (as cast and geth write). Its password comes from AUDITAI_KEYSTORE_PASSWORD or --password-file. Without a keystore the key comes from AUDITAI_ANCHOR_KEY (hex)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand eval" -l password-file -d 'A file holding the keystore\'s password' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand eval" -l confirmations -d 'Blocks on top of the anchor\'s block to wait for (default: the preset\'s, 1 on local)' -r
complete -c auditai -n "__fish_auditai_using_subcommand eval" -l timeout -d 'Seconds to wait for the confirmations' -r
complete -c auditai -n "__fish_auditai_using_subcommand eval" -l calendar -d 'An OpenTimestamps calendar URL (repeatable; default: the public calendars)' -r
complete -c auditai -n "__fish_auditai_using_subcommand eval" -l no-verify -d 'Load the model without checking who signed its manifest (its files are still read only through the manifest\'s digests; loud; recorded in the attestation)'
complete -c auditai -n "__fish_auditai_using_subcommand eval" -l skip-bad-rows -d 'Skip rows with an unusable feature or label (counted) instead of stopping'
complete -c auditai -n "__fish_auditai_using_subcommand eval" -l json -d 'Print one JSON object (the attestation\'s predicate) instead of the tables'
complete -c auditai -n "__fish_auditai_using_subcommand eval" -s q -l quiet -d 'No notices on stderr'
complete -c auditai -n "__fish_auditai_using_subcommand eval" -l ots -d 'Also timestamp the root on Bitcoin through OpenTimestamps calendars'
complete -c auditai -n "__fish_auditai_using_subcommand eval" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c auditai -n "__fish_auditai_using_subcommand export" -l format -d 'What to write' -r -f -a "model-card\t'Markdown model card (Mitchell et al.)'
cyclonedx\t'CycloneDX 1.6 JSON ML-BOM'"
complete -c auditai -n "__fish_auditai_using_subcommand export" -l out -d 'Write here (atomically) instead of stdout. An existing file is replaced only when it is a document auditai exported and nobody edited since (its body still has the sealed digest)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand export" -l key -d 'A public key (SPKI PEM) the run\'s manifest must be signed by; the document then names its signers as verified (otherwise as claimed). Repeatable' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand export" -l policy -d 'A trust policy the run\'s manifest must satisfy' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand export" -l eval -d 'An evaluation attestation of this run (`auditai eval`) whose results to include (repeatable); included only when its signatures hold under --key/--policy' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand export" -l root -d 'Where the run\'s training data lives, for the class balance (default: the git work tree holding the run, else the current directory)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand export" -l stage -d 'With a pipeline manifest: the training stage whose model to describe (needed only when the pipeline has several). The document then traces the training file back to the raw data through the stages that made it' -r
complete -c auditai -n "__fish_auditai_using_subcommand export" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c auditai -n "__fish_auditai_using_subcommand sign" -l key -d 'The ed25519 private key (PKCS#8 PEM, mode 0600). Otherwise AUDITAI_SIGNING_KEY (PEM text), then AUDITAI_SIGNING_KEY_FILE' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand sign" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand keygen" -l out -d 'Write PREFIX.key (private, PKCS#8 PEM, mode 0600) and PREFIX.pub (public, SPKI PEM)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand keygen" -l json -d 'Print one JSON object instead of text'
complete -c auditai -n "__fish_auditai_using_subcommand keygen" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand hash" -l sha256 -d 'Also compute sha256 (shown in --json)'
complete -c auditai -n "__fish_auditai_using_subcommand hash" -l no-cache -d 'Re-read every file instead of trusting the stat cache'
complete -c auditai -n "__fish_auditai_using_subcommand hash" -l json -d 'Print one JSON object instead of `digest  path` lines'
complete -c auditai -n "__fish_auditai_using_subcommand hash" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c auditai -n "__fish_auditai_using_subcommand anchor; and not __fish_seen_subcommand_from upgrade help" -l chain -d 'An EVM chain preset: 0g-mainnet, 0g-galileo, ethereum, sepolia or local. The node\'s eth_chainId must match the preset' -r
complete -c auditai -n "__fish_auditai_using_subcommand anchor; and not __fish_seen_subcommand_from upgrade help" -l rpc -d 'The JSON-RPC URL (overrides the preset\'s). Alone, it needs --chain-id: the endpoint never chooses which chain the key signs for' -r
complete -c auditai -n "__fish_auditai_using_subcommand anchor; and not __fish_seen_subcommand_from upgrade help" -l chain-id -d 'The chain id the transaction is signed for; the node\'s eth_chainId must match it. Required with a bare --rpc; with --chain it must equal the preset\'s' -r
complete -c auditai -n "__fish_auditai_using_subcommand anchor; and not __fish_seen_subcommand_from upgrade help" -l max-fee-gwei -d 'The most the anchor may pay per gas (max fee per gas), in gwei; the node\'s fee suggestion is capped at this, and a base fee above it is an error' -r
complete -c auditai -n "__fish_auditai_using_subcommand anchor; and not __fish_seen_subcommand_from upgrade help" -l max-priority-fee-gwei -d 'The most the anchor may tip per gas (max priority fee per gas), in gwei' -r
complete -c auditai -n "__fish_auditai_using_subcommand anchor; and not __fish_seen_subcommand_from upgrade help" -l max-gas -d 'The most gas the anchor transaction may use (it needs about 22,600); a larger estimate from the node is an error' -r
complete -c auditai -n "__fish_auditai_using_subcommand anchor; and not __fish_seen_subcommand_from upgrade help" -l keystore -d 'The anchoring account\'s Web3 Secret Storage v3 keystore (as cast and geth write). Its password comes from AUDITAI_KEYSTORE_PASSWORD or --password-file. Without a keystore the key comes from AUDITAI_ANCHOR_KEY (hex)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand anchor; and not __fish_seen_subcommand_from upgrade help" -l password-file -d 'A file holding the keystore\'s password' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand anchor; and not __fish_seen_subcommand_from upgrade help" -l confirmations -d 'Blocks on top of the anchor\'s block to wait for (default: the preset\'s, 1 on local)' -r
complete -c auditai -n "__fish_auditai_using_subcommand anchor; and not __fish_seen_subcommand_from upgrade help" -l timeout -d 'Seconds to wait for the confirmations' -r
complete -c auditai -n "__fish_auditai_using_subcommand anchor; and not __fish_seen_subcommand_from upgrade help" -l calendar -d 'An OpenTimestamps calendar URL (repeatable; default: the public calendars)' -r
complete -c auditai -n "__fish_auditai_using_subcommand anchor; and not __fish_seen_subcommand_from upgrade help" -l ots -d 'Also timestamp the root on Bitcoin through OpenTimestamps calendars'
complete -c auditai -n "__fish_auditai_using_subcommand anchor; and not __fish_seen_subcommand_from upgrade help" -l dry-run -d 'Print the signed raw transaction instead of sending it'
complete -c auditai -n "__fish_auditai_using_subcommand anchor; and not __fish_seen_subcommand_from upgrade help" -l force -d 'Anchor manifests that already have a receipt again'
complete -c auditai -n "__fish_auditai_using_subcommand anchor; and not __fish_seen_subcommand_from upgrade help" -l json -d 'Print one JSON object instead of the table'
complete -c auditai -n "__fish_auditai_using_subcommand anchor; and not __fish_seen_subcommand_from upgrade help" -s q -l quiet -d 'No progress on stderr'
complete -c auditai -n "__fish_auditai_using_subcommand anchor; and not __fish_seen_subcommand_from upgrade help" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand anchor; and not __fish_seen_subcommand_from upgrade help" -a "upgrade" -d 'Ask the OpenTimestamps calendars for completed Bitcoin attestations and update each manifest\'s .ots proof and receipt. Still pending is a status, not an error'
complete -c auditai -n "__fish_auditai_using_subcommand anchor; and not __fish_seen_subcommand_from upgrade help" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c auditai -n "__fish_auditai_using_subcommand anchor; and __fish_seen_subcommand_from upgrade" -l calendar -d 'A calendar that may be asked (repeatable; default: the public calendars). Pending attestations naming any other URL are left as they are: a proof someone sent cannot make auditai contact a server of their choosing' -r
complete -c auditai -n "__fish_auditai_using_subcommand anchor; and __fish_seen_subcommand_from upgrade" -l json -d 'Print one JSON object instead of the table'
complete -c auditai -n "__fish_auditai_using_subcommand anchor; and __fish_seen_subcommand_from upgrade" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand anchor; and __fish_seen_subcommand_from help" -f -a "upgrade" -d 'Ask the OpenTimestamps calendars for completed Bitcoin attestations and update each manifest\'s .ots proof and receipt. Still pending is a status, not an error'
complete -c auditai -n "__fish_auditai_using_subcommand anchor; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c auditai -n "__fish_auditai_using_subcommand audit; and not __fish_seen_subcommand_from dispute help" -l rerun -d 'Pipeline manifest: re-execute this command stage in a scratch copy of its recorded deps, with its recorded environment, and compare its outs bitwise with the recorded digests. Exit 0 when reproduced, 1 when an out differs or is missing' -r
complete -c auditai -n "__fish_auditai_using_subcommand audit; and not __fish_seen_subcommand_from dispute help" -l key -d 'A public key (SPKI PEM) trusted to have signed the manifest; repeat for several. The manifest\'s signatures are checked first, as `auditai verify` checks them, and the audit (or, with --rerun, the recorded command) goes ahead only when they hold' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand audit; and not __fish_seen_subcommand_from dispute help" -l policy -d 'A trust policy the manifest\'s signatures must satisfy' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand audit; and not __fish_seen_subcommand_from dispute help" -l timeout -d 'With --challenge-from-anchor: wait this long (`90s`, `10m`) for the challenge block to be mined instead of stopping at once. With --rerun: stop the command after this long; it is then not reproduced' -r
complete -c auditai -n "__fish_auditai_using_subcommand audit; and not __fish_seen_subcommand_from dispute help" -l segments -d 'How many transcript segments to replay. Replaying K of E segments costs about K/E of the training time' -r
complete -c auditai -n "__fish_auditai_using_subcommand audit; and not __fish_seen_subcommand_from dispute help" -l challenge -d 'The challenge that picks the segments, hex (e.g. a beacon value the auditor trusts). Without it and without --challenge-from-anchor, fresh OS randomness is used and printed' -r
complete -c auditai -n "__fish_auditai_using_subcommand audit; and not __fish_seen_subcommand_from dispute help" -l device -d 'Where to replay: default the backend that trained (compared bitwise). Another backend needs --tolerance' -r -f -a "auto\t''
wgpu\t''
cpu\t''"
complete -c auditai -n "__fish_auditai_using_subcommand audit; and not __fish_seen_subcommand_from dispute help" -l rtol -d 'With --rerun --tolerance: the relative tolerance for numbers in JSON and CSV outs' -r
complete -c auditai -n "__fish_auditai_using_subcommand audit; and not __fish_seen_subcommand_from dispute help" -l allow-extra -d 'A file or directory in the run directory that the manifest does not name but that is expected there (repeatable), as for `auditai verify`' -r
complete -c auditai -n "__fish_auditai_using_subcommand audit; and not __fish_seen_subcommand_from dispute help" -l reveal -d 'Check a withheld data source (a salted contribution) with its salt: SOURCE is the data file as the manifest names it (or its file name), SALT_FILE the owner\'s salt (repeatable). Without it a withheld source cannot be replayed' -r
complete -c auditai -n "__fish_auditai_using_subcommand audit; and not __fish_seen_subcommand_from dispute help" -l root -d 'Where the data files named by the commitment live (default: the git work tree holding the manifest, else the current directory)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand audit; and not __fish_seen_subcommand_from dispute help" -l rpc -d 'Check the anchors (commitment and challenge) online against this JSON-RPC endpoint' -r
complete -c auditai -n "__fish_auditai_using_subcommand audit; and not __fish_seen_subcommand_from dispute help" -l chain -d 'Check the anchors online against this chain preset\'s endpoint' -r
complete -c auditai -n "__fish_auditai_using_subcommand audit; and not __fish_seen_subcommand_from dispute help" -l attest -d 'Write a signed verdict (an in-toto Statement with the SLSA Verification Summary v1 predicate, docs/attestations.md) of this check, signed with this ed25519 private key: next to the manifest as verdict-<kind>-<time>.intoto.json, or to --attest-out. A failed check yields a verdict that says FAILED' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand audit; and not __fish_seen_subcommand_from dispute help" -l attest-out -d 'Where to write the verdict (an existing file is not replaced)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand audit; and not __fish_seen_subcommand_from dispute help" -l trust-recorded-command -d 'With --rerun: execute the recorded command without checking who signed the manifest. The command runs in a scratch directory but is not sandboxed: use this only for a manifest you produced yourself'
complete -c auditai -n "__fish_auditai_using_subcommand audit; and not __fish_seen_subcommand_from dispute help" -l challenge-from-anchor -d 'Take the challenge from the chain the manifest is anchored on: the hash of the block 6 blocks after the anchor\'s, read online (needs --rpc or --chain). The prover cannot choose that block by choosing what to anchor; what grinding remains (anchoring many runs, block producers) is in docs/audit.md'
complete -c auditai -n "__fish_auditai_using_subcommand audit; and not __fish_seen_subcommand_from dispute help" -l allow-unconfirmed-challenge -d 'With --challenge-from-anchor and no --rpc/--chain: take the anchor block hash the receipt claims, unchecked. The prover wrote that receipt and could have chosen it; the challenge is reported as claimed, never as verified'
complete -c auditai -n "__fish_auditai_using_subcommand audit; and not __fish_seen_subcommand_from dispute help" -l tolerance -d 'Accept a replay on another backend than the one that trained (for example a wgpu run on a machine without a GPU), compared within the tolerances in docs/audit.md, not bitwise. With --rerun: accept JSON and CSV outs whose numbers differ by at most --rtol relatively (and nothing else differs); the differing values are printed either way'
complete -c auditai -n "__fish_auditai_using_subcommand audit; and not __fish_seen_subcommand_from dispute help" -l json -d 'Print one JSON object instead of the tables'
complete -c auditai -n "__fish_auditai_using_subcommand audit; and not __fish_seen_subcommand_from dispute help" -s q -l quiet -d 'No progress on stderr'
complete -c auditai -n "__fish_auditai_using_subcommand audit; and not __fish_seen_subcommand_from dispute help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c auditai -n "__fish_auditai_using_subcommand audit; and not __fish_seen_subcommand_from dispute help" -a "dispute" -d 'Play a whole dispute between two runs of the same job on this machine: bisect their transcripts to the first step where they differ, replay that one step, and say which run trained honestly. Exit 0 when the runs agree (or no fault is found), 1 when one run (or both) is wrong, 2 when the game cannot be played'
complete -c auditai -n "__fish_auditai_using_subcommand audit; and not __fish_seen_subcommand_from dispute help" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c auditai -n "__fish_auditai_using_subcommand audit; and __fish_seen_subcommand_from dispute" -l root -d 'Where the runs\' data lives (default: as for `verify`, the project holding each run)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand audit; and __fish_seen_subcommand_from dispute" -l reveal -d 'The salt of a withheld data source: SOURCE=SALT_FILE (repeatable)' -r
complete -c auditai -n "__fish_auditai_using_subcommand audit; and __fish_seen_subcommand_from dispute" -l device -d 'Replay on this device (default: the backend the run committed to, else the CPU)' -r -f -a "auto\t''
wgpu\t''
cpu\t''"
complete -c auditai -n "__fish_auditai_using_subcommand audit; and __fish_seen_subcommand_from dispute" -l json -d 'Print one JSON object instead of text'
complete -c auditai -n "__fish_auditai_using_subcommand audit; and __fish_seen_subcommand_from dispute" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "dispute" -d 'Play a whole dispute between two runs of the same job on this machine: bisect their transcripts to the first step where they differ, replay that one step, and say which run trained honestly. Exit 0 when the runs agree (or no fault is found), 1 when one run (or both) is wrong, 2 when the game cannot be played'
complete -c auditai -n "__fish_auditai_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c auditai -n "__fish_auditai_using_subcommand inspect" -l json -d 'Print the statement as JSON instead of a summary'
complete -c auditai -n "__fish_auditai_using_subcommand inspect" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand bundle" -s o -l out -d 'Where to write the bundle (default: bundle.json); an existing file is never replaced' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand bundle" -l eval -d 'An evaluation attestation about the run to carry too; repeatable' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand bundle" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c auditai -n "__fish_auditai_using_subcommand params; and not __fish_seen_subcommand_from diff show help" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand params; and not __fish_seen_subcommand_from diff show help" -f -a "diff" -d 'Show the params that differ between two points, as `dvc params diff` does'
complete -c auditai -n "__fish_auditai_using_subcommand params; and not __fish_seen_subcommand_from diff show help" -f -a "show" -d 'Show the params of one point (default: the working tree)'
complete -c auditai -n "__fish_auditai_using_subcommand params; and not __fish_seen_subcommand_from diff show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c auditai -n "__fish_auditai_using_subcommand params; and __fish_seen_subcommand_from diff" -l spec -d 'The pipeline spec (default: dvc.yaml, pipeline.yaml, or the one YAML file with `stages:` in the current directory)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand params; and __fish_seen_subcommand_from diff" -l all -d 'Show unchanged values too'
complete -c auditai -n "__fish_auditai_using_subcommand params; and __fish_seen_subcommand_from diff" -l json -d 'Print `{file: {key: {old, new, diff}}}` instead of the table'
complete -c auditai -n "__fish_auditai_using_subcommand params; and __fish_seen_subcommand_from diff" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c auditai -n "__fish_auditai_using_subcommand params; and __fish_seen_subcommand_from show" -l spec -d 'The pipeline spec, as for `diff`' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand params; and __fish_seen_subcommand_from show" -l json -d 'Print `{file: {key: value}}` instead of the table'
complete -c auditai -n "__fish_auditai_using_subcommand params; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand params; and __fish_seen_subcommand_from help" -f -a "diff" -d 'Show the params that differ between two points, as `dvc params diff` does'
complete -c auditai -n "__fish_auditai_using_subcommand params; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show the params of one point (default: the working tree)'
complete -c auditai -n "__fish_auditai_using_subcommand params; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c auditai -n "__fish_auditai_using_subcommand metrics; and not __fish_seen_subcommand_from diff show help" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand metrics; and not __fish_seen_subcommand_from diff show help" -f -a "diff" -d 'Show the metrics that differ between two points, with the change, as `dvc metrics diff`'
complete -c auditai -n "__fish_auditai_using_subcommand metrics; and not __fish_seen_subcommand_from diff show help" -f -a "show" -d 'Show the metrics of one point (default: the working tree)'
complete -c auditai -n "__fish_auditai_using_subcommand metrics; and not __fish_seen_subcommand_from diff show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c auditai -n "__fish_auditai_using_subcommand metrics; and __fish_seen_subcommand_from diff" -l spec -d 'The pipeline spec (default: dvc.yaml, pipeline.yaml, or the one YAML file with `stages:` in the current directory)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand metrics; and __fish_seen_subcommand_from diff" -l all -d 'Show unchanged values too'
complete -c auditai -n "__fish_auditai_using_subcommand metrics; and __fish_seen_subcommand_from diff" -l json -d 'Print `{file: {key: {old, new, diff}}}` instead of the table'
complete -c auditai -n "__fish_auditai_using_subcommand metrics; and __fish_seen_subcommand_from diff" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c auditai -n "__fish_auditai_using_subcommand metrics; and __fish_seen_subcommand_from show" -l spec -d 'The pipeline spec, as for `diff`' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand metrics; and __fish_seen_subcommand_from show" -l json -d 'Print `{file: {key: value}}` instead of the table'
complete -c auditai -n "__fish_auditai_using_subcommand metrics; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand metrics; and __fish_seen_subcommand_from help" -f -a "diff" -d 'Show the metrics that differ between two points, with the change, as `dvc metrics diff`'
complete -c auditai -n "__fish_auditai_using_subcommand metrics; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show the metrics of one point (default: the working tree)'
complete -c auditai -n "__fish_auditai_using_subcommand metrics; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c auditai -n "__fish_auditai_using_subcommand runs" -l json -d 'Print a JSON array instead of the table'
complete -c auditai -n "__fish_auditai_using_subcommand runs" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c auditai -n "__fish_auditai_using_subcommand report" -s o -l output -d 'Where to write the page (default: report.html in the run\'s directory)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand report" -l eval -d 'An evaluation attestation of the run\'s model to show (repeatable): its confusion matrix, subgroups, reliability diagram and criteria' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand report" -l key -d 'A public key (SPKI PEM) the manifest and attestations must be signed by (repeatable); the page then says who signed. Without --key or --policy the signatures are shown as claimed, not checked' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand report" -l policy -d 'A trust policy the signatures must satisfy' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand report" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand contribute" -l key -d 'The owner\'s ed25519 private key (PKCS#8 PEM, mode 0600); its public key is named in the statement, which only this key\'s signature makes valid' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand contribute" -s o -l out -d 'Where to write the statement (default DATA.contribution.json; never replaced)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand contribute" -l owner-name -d 'The owner\'s display name' -r
complete -c auditai -n "__fish_auditai_using_subcommand contribute" -l license -d 'SPDX licence expression (`CC-BY-4.0`, `MIT OR Apache-2.0`, `LicenseRef-…`)' -r
complete -c auditai -n "__fish_auditai_using_subcommand contribute" -l legal-basis -l consent -d 'The legal basis, a W3C DPV term: Consent, Contract, LegalObligation, VitalInterest, PublicInterest, LegitimateInterest, ScientificResearch, … (`dpv:` optional)' -r
complete -c auditai -n "__fish_auditai_using_subcommand contribute" -l ai-training -d 'CAWG `cawg.ai_training`: allowed, notAllowed or constrained' -r
complete -c auditai -n "__fish_auditai_using_subcommand contribute" -l ai-inference -d 'CAWG `cawg.ai_inference` (default notAllowed)' -r
complete -c auditai -n "__fish_auditai_using_subcommand contribute" -l data-mining -d 'CAWG `cawg.data_mining` (default notAllowed)' -r
complete -c auditai -n "__fish_auditai_using_subcommand contribute" -l constraint-info -d 'What `constrained` means (required when a use is constrained)' -r
complete -c auditai -n "__fish_auditai_using_subcommand contribute" -l jurisdiction -d 'Where the data may be processed: ISO 3166-1 alpha-2 code, EU or EEA (repeatable; none: anywhere not excluded)' -r
complete -c auditai -n "__fish_auditai_using_subcommand contribute" -l exclude-jurisdiction -d 'Where it must not be processed (repeatable)' -r
complete -c auditai -n "__fish_auditai_using_subcommand contribute" -l expires -d 'When these terms expire: YYYY-MM-DD (end of that day, UTC) or RFC 3339' -r
complete -c auditai -n "__fish_auditai_using_subcommand contribute" -l reward-address -d 'The EVM address rewards for this data are paid to' -r
complete -c auditai -n "__fish_auditai_using_subcommand contribute" -l salt-out -d 'Where to write the salt (default DATA.salt; never replaced)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand contribute" -l salted -d 'Withhold the data: the statement names only a salted commitment to the file, never its digest. The salt is written to --salt-out (mode 0600); give it to whoever must check the data (a trainer\'s `salt:`, a verifier\'s `--reveal`), to nobody else'
complete -c auditai -n "__fish_auditai_using_subcommand contribute" -l json -d 'Print one JSON object instead of text'
complete -c auditai -n "__fish_auditai_using_subcommand contribute" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c auditai -n "__fish_auditai_using_subcommand rewards; and not __fish_seen_subcommand_from proof help" -l value -d 'How each source\'s value is measured: `in-run` (the first-order value the run measured and its replay audit re-derives) or `shapley` (exact group Shapley values by retraining on every subset of the sources; at most 6)' -r -f -a "in-run\t''
shapley\t''"
complete -c auditai -n "__fish_auditai_using_subcommand rewards; and not __fish_seen_subcommand_from proof help" -l pool -d 'The pool to split, in the token\'s smallest unit (e.g. wei). Without it, only the values are printed' -r
complete -c auditai -n "__fish_auditai_using_subcommand rewards; and not __fish_seen_subcommand_from proof help" -l compute-share -d 'The compute provider\'s share (the run\'s signer), 0 to 1' -r
complete -c auditai -n "__fish_auditai_using_subcommand rewards; and not __fish_seen_subcommand_from proof help" -l verifier-share -d 'The verifiers\' share, split evenly between the signers of --verdict, 0 to 1' -r
complete -c auditai -n "__fish_auditai_using_subcommand rewards; and not __fish_seen_subcommand_from proof help" -l verdict -d 'A passed verdict about this run (`verify --attest`, `audit --attest`) whose signer is paid from the verifiers\' share (repeatable; its signature is checked under --key)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand rewards; and not __fish_seen_subcommand_from proof help" -l address -d 'The reward address of a signer (the run\'s, a verdict\'s): KEYID=0x… (repeatable)' -r
complete -c auditai -n "__fish_auditai_using_subcommand rewards; and not __fish_seen_subcommand_from proof help" -l key -d 'A public key (SPKI PEM) the run\'s manifest and the verdicts must be signed by (repeatable)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand rewards; and not __fish_seen_subcommand_from proof help" -l policy -d 'A trust policy the run\'s manifest must satisfy' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand rewards; and not __fish_seen_subcommand_from proof help" -l sign-with -d 'Sign the statement of the root with this ed25519 private key (otherwise AUDITAI_SIGNING_KEY, then AUDITAI_SIGNING_KEY_FILE; one is required with --pool)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand rewards; and not __fish_seen_subcommand_from proof help" -s o -l out -d 'Where to write the tree (an OpenZeppelin StandardMerkleTree dump); the signed statement goes beside it as NAME.intoto.json. Never replaces a file' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand rewards; and not __fish_seen_subcommand_from proof help" -l root -d 'Where the run\'s data lives (for --value shapley; default as for `verify`)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand rewards; and not __fish_seen_subcommand_from proof help" -l reveal -d 'The salt of a withheld source (for --value shapley): SOURCE=SALT_FILE (repeatable)' -r
complete -c auditai -n "__fish_auditai_using_subcommand rewards; and not __fish_seen_subcommand_from proof help" -l json -d 'Print one JSON object instead of text'
complete -c auditai -n "__fish_auditai_using_subcommand rewards; and not __fish_seen_subcommand_from proof help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c auditai -n "__fish_auditai_using_subcommand rewards; and not __fish_seen_subcommand_from proof help" -a "proof" -d 'Print the proof of one address\'s claim in a rewards file (what a Merkle distributor\'s `claim` takes): its amount, the root and the sibling hashes'
complete -c auditai -n "__fish_auditai_using_subcommand rewards; and not __fish_seen_subcommand_from proof help" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c auditai -n "__fish_auditai_using_subcommand rewards; and __fish_seen_subcommand_from proof" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand rewards; and __fish_seen_subcommand_from help" -f -a "proof" -d 'Print the proof of one address\'s claim in a rewards file (what a Merkle distributor\'s `claim` takes): its amount, the root and the sibling hashes'
complete -c auditai -n "__fish_auditai_using_subcommand rewards; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and not __fish_seen_subcommand_from open respond next judge help" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and not __fish_seen_subcommand_from open respond next judge help" -f -a "open" -d 'The referee opens a dispute between two runs of the same job: checks their commitments name the same spec, seed, data and initial weights, finds the first transcript segment whose states differ, and writes the dispute file with the first signed request (each party\'s state at the middle step). Exit 0 with nothing written when the runs agree'
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and not __fish_seen_subcommand_from open respond next judge help" -f -a "respond" -d 'A party answers the open request: replays from its own checkpoint before the disputed segment to the requested step, writes the state files and appends its signed answer'
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and not __fish_seen_subcommand_from open respond next judge help" -f -a "next" -d 'The referee narrows the interval from both answers and signs the next request; says so when one step is left'
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and not __fish_seen_subcommand_from open respond next judge help" -f -a "judge" -d 'The referee replays the one step left (or, when a party did not answer, declares it the loser) and signs a verdict naming the party whose claim matches. Exit 0 when no fault is found, 1 when a party (or both) is wrong'
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and not __fish_seen_subcommand_from open respond next judge help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from open" -l key -d 'The referee\'s ed25519 private key' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from open" -s o -l out -d 'The dispute file (its state files go into NAME.states/ beside it)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from open" -l root -d 'Where the runs\' data lives (default: as for `verify`, the project holding each run)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from open" -l reveal -d 'The salt of a withheld data source: SOURCE=SALT_FILE (repeatable)' -r
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from open" -l device -d 'Replay on this device (default: the backend the run committed to, else the CPU)' -r -f -a "auto\t''
wgpu\t''
cpu\t''"
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from open" -l json -d 'Print one JSON object instead of text'
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from open" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from respond" -l key -d 'The party\'s ed25519 private key: one that signed its run\'s manifest' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from respond" -l root -d 'Where the runs\' data lives (default: as for `verify`, the project holding each run)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from respond" -l reveal -d 'The salt of a withheld data source: SOURCE=SALT_FILE (repeatable)' -r
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from respond" -l device -d 'Replay on this device (default: the backend the run committed to, else the CPU)' -r -f -a "auto\t''
wgpu\t''
cpu\t''"
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from respond" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from next" -l key -d 'The referee\'s ed25519 private key (the one that opened the dispute)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from next" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from judge" -l key -d 'The referee\'s ed25519 private key (the one that opened the dispute)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from judge" -s o -l out -d 'Where to write the verdict (default verdict-dispute-<time>.intoto.json beside the dispute file; never replaced)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from judge" -l root -d 'Where the runs\' data lives (default: as for `verify`, the project holding each run)' -r -F
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from judge" -l reveal -d 'The salt of a withheld data source: SOURCE=SALT_FILE (repeatable)' -r
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from judge" -l device -d 'Replay on this device (default: the backend the run committed to, else the CPU)' -r -f -a "auto\t''
wgpu\t''
cpu\t''"
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from judge" -l json -d 'Print one JSON object instead of text'
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from judge" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from help" -f -a "open" -d 'The referee opens a dispute between two runs of the same job: checks their commitments name the same spec, seed, data and initial weights, finds the first transcript segment whose states differ, and writes the dispute file with the first signed request (each party\'s state at the middle step). Exit 0 with nothing written when the runs agree'
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from help" -f -a "respond" -d 'A party answers the open request: replays from its own checkpoint before the disputed segment to the requested step, writes the state files and appends its signed answer'
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from help" -f -a "next" -d 'The referee narrows the interval from both answers and signs the next request; says so when one step is left'
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from help" -f -a "judge" -d 'The referee replays the one step left (or, when a party did not answer, declares it the loser) and signs a verdict naming the party whose claim matches. Exit 0 when no fault is found, 1 when a party (or both) is wrong'
complete -c auditai -n "__fish_auditai_using_subcommand dispute; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c auditai -n "__fish_auditai_using_subcommand completions" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand man" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand stage-job" -s h -l help -d 'Print help'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run status verify predict eval export sign keygen hash anchor audit inspect bundle params metrics runs report contribute rewards dispute completions man stage-job help" -f -a "run" -d 'Run a pipeline spec: train a model, or run a multi-stage pipeline\'s stale stages'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run status verify predict eval export sign keygen hash anchor audit inspect bundle params metrics runs report contribute rewards dispute completions man stage-job help" -f -a "status" -d 'Say which stages of a multi-stage pipeline are stale and exactly why'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run status verify predict eval export sign keygen hash anchor audit inspect bundle params metrics runs report contribute rewards dispute completions man stage-job help" -f -a "verify" -d 'Verify a provenance manifest: its signatures, who signed it, and every file it names'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run status verify predict eval export sign keygen hash anchor audit inspect bundle params metrics runs report contribute rewards dispute completions man stage-job help" -f -a "predict" -d 'Use a trained model: verify its run, then predict one output row per input row'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run status verify predict eval export sign keygen hash anchor audit inspect bundle params metrics runs report contribute rewards dispute completions man stage-job help" -f -a "eval" -d 'Evaluate a trained model on external data against pre-registered acceptance criteria'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run status verify predict eval export sign keygen hash anchor audit inspect bundle params metrics runs report contribute rewards dispute completions man stage-job help" -f -a "export" -d 'Write a model card (Markdown) or a CycloneDX 1.6 ML-BOM bound to a signed run'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run status verify predict eval export sign keygen hash anchor audit inspect bundle params metrics runs report contribute rewards dispute completions man stage-job help" -f -a "sign" -d 'Add a co-signature to a provenance manifest; existing signatures stay valid'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run status verify predict eval export sign keygen hash anchor audit inspect bundle params metrics runs report contribute rewards dispute completions man stage-job help" -f -a "keygen" -d 'Generate an ed25519 key pair (PKCS#8 and SPKI PEM, as openssl writes them)'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run status verify predict eval export sign keygen hash anchor audit inspect bundle params metrics runs report contribute rewards dispute completions man stage-job help" -f -a "hash" -d 'Print blake3 digests of files and directory trees (`digest  path`, like b3sum)'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run status verify predict eval export sign keygen hash anchor audit inspect bundle params metrics runs report contribute rewards dispute completions man stage-job help" -f -a "anchor" -d 'Anchor manifest digests on an EVM chain (0G, Ethereum, local) and/or Bitcoin through OpenTimestamps, batched in one Merkle tree; writes a receipt next to each manifest'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run status verify predict eval export sign keygen hash anchor audit inspect bundle params metrics runs report contribute rewards dispute completions man stage-job help" -f -a "audit" -d 'Check that a run really trained: its commitment, its hash-chained transcript and its checkpoints, then replay segments picked by a challenge and compare with the checkpoints'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run status verify predict eval export sign keygen hash anchor audit inspect bundle params metrics runs report contribute rewards dispute completions man stage-job help" -f -a "inspect" -d 'Show a provenance manifest as a readable summary (data, code, spec, seed, metrics, signers). Does not verify anything; use `auditai verify` for that'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run status verify predict eval export sign keygen hash anchor audit inspect bundle params metrics runs report contribute rewards dispute completions man stage-job help" -f -a "bundle" -d 'Write one portable evidence file: the signed manifest byte for byte, its anchor receipt and OpenTimestamps proof, the verdicts beside it and the evaluation attestations given'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run status verify predict eval export sign keygen hash anchor audit inspect bundle params metrics runs report contribute rewards dispute completions man stage-job help" -f -a "params" -d 'Compare the params stages ran with: `params diff` (two runs, or a run and the working tree) and `params show`, as DVC\'s commands of the same names'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run status verify predict eval export sign keygen hash anchor audit inspect bundle params metrics runs report contribute rewards dispute completions man stage-job help" -f -a "metrics" -d 'Compare metrics: `metrics diff` (with the change) and `metrics show`, as DVC\'s commands of the same names'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run status verify predict eval export sign keygen hash anchor audit inspect bundle params metrics runs report contribute rewards dispute completions man stage-job help" -f -a "runs" -d 'List the runs under a directory (default: runs): pipeline manifests (current and history) and training runs, newest first, with params, headline metrics and signer'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run status verify predict eval export sign keygen hash anchor audit inspect bundle params metrics runs report contribute rewards dispute completions man stage-job help" -f -a "report" -d 'Write one self-contained HTML page about a run: its evidence (digests, signers, anchors, verdicts), training curves, the stage graph and, with --eval, the confusion matrix, subgroups and reliability diagram. Inline SVG, no scripts, nothing fetched'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run status verify predict eval export sign keygen hash anchor audit inspect bundle params metrics runs report contribute rewards dispute completions man stage-job help" -f -a "contribute" -d 'Sign the terms of a data file as its owner: licence, legal basis, permitted uses, jurisdictions, expiry and reward address (an in-toto statement; docs/contributors.md)'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run status verify predict eval export sign keygen hash anchor audit inspect bundle params metrics runs report contribute rewards dispute completions man stage-job help" -f -a "rewards" -d 'Value a run\'s data sources and split a reward pool as a Merkle tree any distributor contract pays out (`rewards RUN --pool N -o rewards.json`), or print one claim\'s proof (`rewards proof rewards.json ADDRESS`)'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run status verify predict eval export sign keygen hash anchor audit inspect bundle params metrics runs report contribute rewards dispute completions man stage-job help" -f -a "dispute" -d 'Settle a dispute between two training nodes given the same job: a refereed bisection over their transcripts down to one step, which the referee replays (`open`, `respond`, `next`, `judge`; docs/audit.md, "Disputes"). `auditai audit dispute` plays it all locally'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run status verify predict eval export sign keygen hash anchor audit inspect bundle params metrics runs report contribute rewards dispute completions man stage-job help" -f -a "completions" -d 'Print a shell completion script'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run status verify predict eval export sign keygen hash anchor audit inspect bundle params metrics runs report contribute rewards dispute completions man stage-job help" -f -a "man" -d 'Print the man page (roff), as `man 1 auditai` shows it'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run status verify predict eval export sign keygen hash anchor audit inspect bundle params metrics runs report contribute rewards dispute completions man stage-job help" -f -a "stage-job" -d 'Run one pipeline stage inside a Slurm allocation (what `executor: slurm` submits; not for direct use)'
complete -c auditai -n "__fish_auditai_using_subcommand help; and not __fish_seen_subcommand_from run status verify predict eval export sign keygen hash anchor audit inspect bundle params metrics runs report contribute rewards dispute completions man stage-job help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c auditai -n "__fish_auditai_using_subcommand help; and __fish_seen_subcommand_from anchor" -f -a "upgrade" -d 'Ask the OpenTimestamps calendars for completed Bitcoin attestations and update each manifest\'s .ots proof and receipt. Still pending is a status, not an error'
complete -c auditai -n "__fish_auditai_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "dispute" -d 'Play a whole dispute between two runs of the same job on this machine: bisect their transcripts to the first step where they differ, replay that one step, and say which run trained honestly. Exit 0 when the runs agree (or no fault is found), 1 when one run (or both) is wrong, 2 when the game cannot be played'
complete -c auditai -n "__fish_auditai_using_subcommand help; and __fish_seen_subcommand_from params" -f -a "diff" -d 'Show the params that differ between two points, as `dvc params diff` does'
complete -c auditai -n "__fish_auditai_using_subcommand help; and __fish_seen_subcommand_from params" -f -a "show" -d 'Show the params of one point (default: the working tree)'
complete -c auditai -n "__fish_auditai_using_subcommand help; and __fish_seen_subcommand_from metrics" -f -a "diff" -d 'Show the metrics that differ between two points, with the change, as `dvc metrics diff`'
complete -c auditai -n "__fish_auditai_using_subcommand help; and __fish_seen_subcommand_from metrics" -f -a "show" -d 'Show the metrics of one point (default: the working tree)'
complete -c auditai -n "__fish_auditai_using_subcommand help; and __fish_seen_subcommand_from rewards" -f -a "proof" -d 'Print the proof of one address\'s claim in a rewards file (what a Merkle distributor\'s `claim` takes): its amount, the root and the sibling hashes'
complete -c auditai -n "__fish_auditai_using_subcommand help; and __fish_seen_subcommand_from dispute" -f -a "open" -d 'The referee opens a dispute between two runs of the same job: checks their commitments name the same spec, seed, data and initial weights, finds the first transcript segment whose states differ, and writes the dispute file with the first signed request (each party\'s state at the middle step). Exit 0 with nothing written when the runs agree'
complete -c auditai -n "__fish_auditai_using_subcommand help; and __fish_seen_subcommand_from dispute" -f -a "respond" -d 'A party answers the open request: replays from its own checkpoint before the disputed segment to the requested step, writes the state files and appends its signed answer'
complete -c auditai -n "__fish_auditai_using_subcommand help; and __fish_seen_subcommand_from dispute" -f -a "next" -d 'The referee narrows the interval from both answers and signs the next request; says so when one step is left'
complete -c auditai -n "__fish_auditai_using_subcommand help; and __fish_seen_subcommand_from dispute" -f -a "judge" -d 'The referee replays the one step left (or, when a party did not answer, declares it the loser) and signs a verdict naming the party whose claim matches. Exit 0 when no fault is found, 1 when a party (or both) is wrong'
