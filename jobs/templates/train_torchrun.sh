# one torchrun per node; torchrun starts the @@{procs} DDP processes (RANK, WORLD_SIZE, LOCAL_RANK)
srun --kill-on-bad-exit=1 --ntasks="$SLURM_NNODES" --ntasks-per-node=1 --cpus-per-task="$SLURM_CPUS_PER_TASK" \
    torchrun --nnodes="$SLURM_NNODES" --nproc-per-node=@@{procs} --rdzv-id="$SLURM_JOB_ID" \
    --rdzv-backend=c10d --rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT" --no-python \
    turbtl train @@{config_args}
