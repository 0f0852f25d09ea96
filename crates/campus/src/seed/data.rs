//! The generated rows, independent of the database they go to.
//!
//! Each organization draws from its own random streams (one for faculty, one
//! for students), derived from the run's seed and the organization number:
//! the data of `org3` is the same whether 3 or 300 organizations are seeded,
//! and the students of an organization do not change with its faculty count.

use fastrand::Rng;

/// Department codes and names, in the order they are created.
pub(super) const DEPARTMENTS: [(&str, &str); 6] = [
    ("CS", "Computer Science"),
    ("EE", "Electrical Engineering"),
    ("ME", "Mechanical Engineering"),
    ("CE", "Civil Engineering"),
    ("CH", "Chemical Engineering"),
    ("BT", "Biotechnology"),
];

/// Specializations per department, same order as [`DEPARTMENTS`].
const SPECIALIZATIONS: [[&str; 4]; 6] = [
    [
        "Machine Learning",
        "Databases",
        "Distributed Systems",
        "Computer Security",
    ],
    [
        "Power Systems",
        "VLSI Design",
        "Signal Processing",
        "Control Systems",
    ],
    [
        "Thermodynamics",
        "Robotics",
        "Manufacturing",
        "Fluid Mechanics",
    ],
    [
        "Structural Engineering",
        "Geotechnics",
        "Transportation",
        "Hydraulics",
    ],
    [
        "Process Engineering",
        "Catalysis",
        "Polymers",
        "Separation Processes",
    ],
    [
        "Genomics",
        "Bioinformatics",
        "Bioprocess Engineering",
        "Immunology",
    ],
];

/// (designation, weight out of 100): more juniors than seniors.
const DESIGNATIONS: [(&str, u32); 4] = [
    ("Professor", 15),
    ("Associate Professor", 25),
    ("Assistant Professor", 40),
    ("Lecturer", 20),
];

const FIRST_NAMES: [&str; 40] = [
    "Aarav", "Aditi", "Aisha", "Amit", "Ananya", "Arjun", "Chen", "Daniel", "Deepa", "Divya",
    "Elena", "Farhan", "Gaurav", "Hannah", "Ishaan", "Jia", "Karan", "Kavya", "Lucas", "Maya",
    "Meera", "Mohan", "Nikhil", "Nisha", "Omar", "Priya", "Rahul", "Riya", "Rohan", "Sara",
    "Sanjay", "Shreya", "Sofia", "Tanvi", "Tomas", "Varun", "Vikram", "Wei", "Yusuf", "Zara",
];

const LAST_NAMES: [&str; 40] = [
    "Agarwal",
    "Banerjee",
    "Bose",
    "Chatterjee",
    "Das",
    "Desai",
    "Fernandes",
    "Garcia",
    "Ghosh",
    "Gupta",
    "Iyer",
    "Jain",
    "Joshi",
    "Kapoor",
    "Khan",
    "Kim",
    "Kulkarni",
    "Kumar",
    "Li",
    "Mehta",
    "Menon",
    "Mishra",
    "Mukherjee",
    "Nair",
    "Patel",
    "Pillai",
    "Rao",
    "Reddy",
    "Rossi",
    "Roy",
    "Saxena",
    "Shah",
    "Sharma",
    "Singh",
    "Smith",
    "Srinivasan",
    "Thomas",
    "Verma",
    "Wang",
    "Yadav",
];

/// Roles of the four users of every organization, as (username suffix,
/// role, first name).
const USERS: [(&str, &str, &str); 4] = [
    ("admin", "admin", "Admin"),
    ("staff", "staff", "Staff"),
    ("faculty", "faculty", "Faculty"),
    ("student", "student", "Student"),
];

/// Programs of one organization: (department index, code, name, years), two
/// per department, bachelor's first.
pub(super) fn programs() -> Vec<(usize, String, String, i32)> {
    DEPARTMENTS
        .iter()
        .enumerate()
        .flat_map(|(d, (code, name))| {
            [
                (d, format!("B{code}"), format!("B.Tech {name}"), 4),
                (d, format!("M{code}"), format!("M.Tech {name}"), 2),
            ]
        })
        .collect()
}

pub(super) struct UserRow {
    pub(super) username: String,
    pub(super) email: String,
    pub(super) first_name: String,
    pub(super) last_name: String,
    pub(super) role: &'static str,
}

pub(super) fn users(org: u32) -> Vec<UserRow> {
    USERS
        .iter()
        .map(|&(suffix, role, first_name)| {
            let username = format!("org{org}-{suffix}");
            UserRow {
                email: format!("{username}@campus.example"),
                username,
                first_name: first_name.to_owned(),
                last_name: format!("Org {org}"),
                role,
            }
        })
        .collect()
}

pub(super) struct FacultyRow {
    /// Index into [`DEPARTMENTS`].
    pub(super) department: usize,
    pub(super) employee_id: String,
    pub(super) first_name: &'static str,
    pub(super) last_name: &'static str,
    pub(super) email: String,
    pub(super) designation: &'static str,
    pub(super) specialization: &'static str,
    pub(super) max_hours_per_week: i32,
    pub(super) is_active: bool,
}

pub(super) struct StudentRow {
    /// Index into [`DEPARTMENTS`].
    pub(super) department: usize,
    /// Index into [`programs`].
    pub(super) program: usize,
    pub(super) roll_number: String,
    pub(super) first_name: &'static str,
    pub(super) last_name: &'static str,
    pub(super) email: String,
    pub(super) semester: i32,
    pub(super) batch: i32,
    pub(super) is_active: bool,
}

/// The faculty of organization `org`, numbered 1..=count.
pub(super) fn faculty(seed: u64, org: u32, count: u32) -> impl Iterator<Item = FacultyRow> {
    let mut rng = stream(seed, org, 1);
    (1..=count).map(move |n| {
        let department = rng.usize(..DEPARTMENTS.len());
        FacultyRow {
            department,
            employee_id: format!("F{org:02}{n:06}"),
            first_name: pick(&mut rng, &FIRST_NAMES),
            last_name: pick(&mut rng, &LAST_NAMES),
            email: format!("f{n}.org{org}@campus.example"),
            designation: weighted(&mut rng, &DESIGNATIONS),
            specialization: pick(&mut rng, &SPECIALIZATIONS[department]),
            max_hours_per_week: rng.i32(12..=20),
            is_active: rng.u32(..100) < 95,
        }
    })
}

/// The students of organization `org`, numbered 1..=count.
pub(super) fn students(seed: u64, org: u32, count: u32) -> impl Iterator<Item = StudentRow> {
    let mut rng = stream(seed, org, 2);
    (1..=count).map(move |n| {
        let department = rng.usize(..DEPARTMENTS.len());
        // Four in five study for the bachelor's degree, whose eight semesters
        // span the whole range; a master's has four.
        let masters = rng.u32(..100) < 20;
        StudentRow {
            department,
            program: department * 2 + usize::from(masters),
            roll_number: format!("S{org:02}{n:07}"),
            first_name: pick(&mut rng, &FIRST_NAMES),
            last_name: pick(&mut rng, &LAST_NAMES),
            email: format!("s{n}.org{org}@campus.example"),
            semester: rng.i32(1..=if masters { 4 } else { 8 }),
            batch: rng.i32(2019..=2026),
            is_active: rng.u32(..100) < 92,
        }
    })
}

/// A random stream for (seed, organization, purpose), decorrelated by
/// SplitMix64 so neighbouring organizations do not get neighbouring seeds.
fn stream(seed: u64, org: u32, purpose: u64) -> Rng {
    let mut x = seed ^ (u64::from(org) << 8 | purpose).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    Rng::with_seed(x ^ (x >> 31))
}

fn pick<T: Copy>(rng: &mut Rng, items: &[T]) -> T {
    items[rng.usize(..items.len())]
}

fn weighted(rng: &mut Rng, items: &[(&'static str, u32)]) -> &'static str {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut roll = rng.u32(..total);
    for &(item, weight) in items {
        if roll < weight {
            return item;
        }
        roll -= weight;
    }
    items[items.len() - 1].0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_organization_data_does_not_depend_on_the_others_or_on_sizes() {
        let a: Vec<String> = students(42, 3, 20)
            .map(|s| s.last_name.to_owned())
            .collect();
        let b: Vec<String> = students(42, 3, 50)
            .take(20)
            .map(|s| s.last_name.to_owned())
            .collect();
        assert_eq!(a, b);
        let c: Vec<String> = students(42, 4, 20)
            .map(|s| s.last_name.to_owned())
            .collect();
        assert_ne!(a, c);
        let d: Vec<String> = students(43, 3, 20)
            .map(|s| s.last_name.to_owned())
            .collect();
        assert_ne!(a, d);
    }

    #[test]
    fn rows_respect_the_documented_ranges() {
        let programs = programs();
        assert_eq!(programs.len(), 12);
        for s in students(7, 1, 2000) {
            assert_eq!(programs[s.program].0, s.department);
            assert!((1..=8).contains(&s.semester) && (2019..=2026).contains(&s.batch));
        }
        for f in faculty(7, 1, 500) {
            assert!((12..=20).contains(&f.max_hours_per_week));
            assert!(SPECIALIZATIONS[f.department].contains(&f.specialization));
        }
        let first = faculty(7, 12, 1).next().unwrap();
        assert_eq!(first.employee_id, "F12000001");
        assert_eq!(first.email, "f1.org12@campus.example");
        assert_eq!(students(7, 2, 1).next().unwrap().roll_number, "S020000001");
    }
}
