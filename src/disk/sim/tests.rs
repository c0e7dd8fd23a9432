use super::*;

fn write(file: &Arc<dyn DiskFile>, bytes: &[u8]) -> io::Result<()> {
    file.append(&mut [IoSlice::new(bytes)])
}

fn dir_and_file(disk: &SimDisk) -> Arc<dyn DiskFile> {
    disk.create_dir_all(Path::new("/d")).unwrap();
    disk.sync_dir(Path::new("/")).unwrap();
    let file = disk.open_append(Path::new("/d/f"), true).unwrap();
    disk.sync_dir(Path::new("/d")).unwrap();
    file
}

#[test]
fn fsynced_data_survives_and_the_rest_may_not() {
    let mut shorter = 0;
    for seed in 0..64 {
        let disk = SimDisk::new(seed, Faults::default());
        let file = dir_and_file(&disk);
        write(&file, &[7u8; 10_000]).unwrap();
        file.sync_data().unwrap();
        write(&file, &[9u8; 10_000]).unwrap();
        let after = disk.power_loss(seed);
        let data = after.read_all(Path::new("/d/f")).unwrap();
        assert!(data.len() >= 10_000 && data.len() <= 20_000);
        assert!(
            data[..10_000].iter().all(|b| *b == 7),
            "durable bytes changed"
        );
        assert!(data[10_000..].iter().all(|b| *b == 9 || *b == 0));
        shorter += usize::from(data.len() < 20_000);
    }
    assert!(
        shorter > 0,
        "unsynced data always survived: the simulation is too kind"
    );
}

#[test]
fn directory_entries_need_a_directory_fsync() {
    let mut lost = 0;
    for seed in 0..32 {
        let disk = SimDisk::new(seed, Faults::default());
        disk.create_dir_all(Path::new("/d")).unwrap();
        disk.sync_dir(Path::new("/")).unwrap();
        let file = disk.open_append(Path::new("/d/new"), true).unwrap();
        write(&file, b"x").unwrap();
        file.sync_all().unwrap();
        let after = disk.power_loss(seed);
        lost += usize::from(!after.exists(Path::new("/d/new")));
        disk.sync_dir(Path::new("/d")).unwrap();
        assert!(disk.power_loss(seed).exists(Path::new("/d/new")));
    }
    assert!(lost > 0);
}

#[test]
fn rename_is_atomic_across_power_loss() {
    for seed in 0..32 {
        let disk = SimDisk::new(seed, Faults::default());
        disk.create_dir_all(Path::new("/d")).unwrap();
        disk.sync_dir(Path::new("/")).unwrap();
        super::super::write_atomically(&disk, Path::new("/d/meta"), b"old").unwrap();
        let file = disk.create_empty(Path::new("/d/meta.tmp")).unwrap();
        write(&file, b"new").unwrap();
        file.sync_all().unwrap();
        disk.rename(Path::new("/d/meta.tmp"), Path::new("/d/meta"))
            .unwrap();
        let after = disk.power_loss(seed);
        let data = after.read_all(Path::new("/d/meta")).unwrap();
        assert!(data == b"old" || data == b"new", "{data:?}");
    }
}

#[test]
fn a_failed_fsync_is_never_retried_into_success() {
    let disk = SimDisk::new(1, Faults::default());
    let file = dir_and_file(&disk);
    disk.set_faults(Faults {
        fail_sync_at: Some(disk.syncs() + 1),
        ..Faults::default()
    });
    write(&file, b"lost").unwrap();
    assert!(file.sync_data().is_err());
    // Linux reported success on the next fsync although the pages were gone.
    assert!(file.sync_data().is_ok());
    for seed in 0..8 {
        let data = disk.power_loss(seed).read_all(Path::new("/d/f")).unwrap();
        assert!(data.len() <= 4);
        assert!(data.iter().zip(b"lost").all(|(a, b)| a == b || *a == 0));
    }
    assert!(
        (0..32).any(|seed| disk.power_loss(seed).read_all(Path::new("/d/f")).unwrap() != b"lost"),
        "the data after a failed fsync must be at risk"
    );
}

#[test]
fn capacity_gives_enospc_and_space_can_be_freed() {
    let disk = SimDisk::new(1, Faults::default());
    let file = dir_and_file(&disk);
    disk.set_faults(Faults {
        capacity: Some(100),
        ..Faults::default()
    });
    write(&file, &[1; 80]).unwrap();
    let full = write(&file, &[1; 40]).unwrap_err();
    assert_eq!(full.kind(), io::ErrorKind::StorageFull);
    assert_eq!(
        file.size().unwrap(),
        80,
        "a refused write leaves nothing behind"
    );
    file.set_len(0).unwrap();
    write(&file, &[1; 40]).unwrap();
}

#[test]
fn the_crash_point_tears_the_write_and_stops_the_disk() {
    let disk = SimDisk::new(3, Faults::default());
    let file = dir_and_file(&disk);
    disk.set_faults(Faults {
        crash_at_op: Some(disk.ops() + 1),
        ..Faults::default()
    });
    assert!(write(&file, &[5; 1000]).is_err());
    assert!(disk.is_dead());
    assert!(file.size().unwrap() <= 1000);
    assert!(write(&file, b"after").is_err());
    assert!(file.sync_data().is_err());
    assert!(disk.create_dir_all(Path::new("/e")).is_err());
}
